//! The control socket: `control.sock` in the run directory, mode 0600. One JSON request
//! per line, one JSON reply per line. Requests are a [`Command`] (`{"cmd":"switch",
//! "phase":"main"}`) or `{"cmd":"status"}`. Commands travel to the run loop, which
//! applies them between steps and answers; malformed lines are answered with an error
//! and never reach the trainer.
//!
//! Bounded: at most [`MAX_CONNECTIONS`] connections are served at once (a thread each,
//! with a small stack). When a new one arrives at the limit, the connection idle the
//! longest is closed to make room, so `ctl status` always gets in however many idle
//! connections are held open; only when every connection is busy (waiting for the
//! trainer) is the new one refused, with a message. A connection idle for
//! [`IDLE_TIMEOUT`] is closed, a request must arrive whole within [`REQUEST_TIMEOUT`] of
//! its first byte, and a reply that cannot be written within [`WRITE_TIMEOUT`] closes
//! the connection. Requests that are not UTF-8 are answered with an error.

use crate::event::Command;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest request line accepted.
const MAX_LINE: u64 = 64 * 1024;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// A connection with no request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A request must arrive whole within this of its first byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A reply must be written within this.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Stack of a connection's thread: it parses one line of JSON at a time.
const CONN_STACK: usize = 256 << 10;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reply {
    pub ok: bool,
    pub step: u64,
    pub message: String,
}

/// A command on its way to the run loop, with where to send the answer.
pub struct Pending {
    pub command: Command,
    pub client: String,
    pub reply: SyncSender<Reply>,
}

/// What `status` answers, updated by the run loop.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub run_id: String,
    pub step: u64,
    pub phase: String,
    pub paused: bool,
    /// Suggestions waiting for `accept`/`dismiss`, oldest first.
    #[serde(default)]
    pub suggestions: Vec<PendingSuggestion>,
}

/// A pending suggestion as `status` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PendingSuggestion {
    pub id: u64,
    pub to_phase: String,
    pub because: String,
}

pub struct ControlServer {
    path: PathBuf,
}

impl ControlServer {
    /// Binds the socket (replacing a stale one left by a killed host) and serves it on a
    /// background thread.
    pub fn start(path: &Path, status: Arc<Mutex<Status>>) -> std::io::Result<(ControlServer, Receiver<Pending>)> {
        if path.exists() {
            if connect_within(path, CONNECT_DEADLINE).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("{}: another host is live on this run", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        // umask keeps the socket private from the moment it exists.
        let old = unsafe { libc::umask(0o077) };
        let bound = UnixListener::bind(path);
        unsafe { libc::umask(old) };
        let listener = bound?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new().name("control".into()).spawn(move || accept_loop(listener, tx, status))?;
        Ok((ControlServer { path: path.to_path_buf() }, rx))
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A served connection, for the limit and for eviction.
struct Conn {
    id: u64,
    stream: UnixStream,
    last_active: Instant,
    /// Waiting for the trainer's answer: not evicted.
    busy: bool,
}

type Registry = Arc<Mutex<Vec<Conn>>>;

fn accept_loop(listener: UnixListener, tx: Sender<Pending>, status: Arc<Mutex<Status>>) {
    let registry: Registry = Arc::new(Mutex::new(Vec::new()));
    for (n, conn) in listener.incoming().enumerate() {
        let Ok(mut conn) = conn else { continue };
        let id = n as u64;
        if !admit(&registry, id, &conn) {
            let step = status.lock().map(|s| s.step).unwrap_or(0);
            let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
            let message = format!("too many connections: {MAX_CONNECTIONS} are busy; try again");
            let _ = write_reply(&mut conn, &Reply { ok: false, step, message });
            continue;
        }
        let (tx, status, reg) = (tx.clone(), status.clone(), registry.clone());
        let spawned = std::thread::Builder::new().name("control-conn".into()).stack_size(CONN_STACK).spawn(move || {
            let _ = serve(conn, id, format!("socket#{n}"), tx, status, &reg);
            if let Ok(mut r) = reg.lock() {
                r.retain(|c| c.id != id);
            }
        });
        if spawned.is_err()
            && let Ok(mut r) = registry.lock()
        {
            r.retain(|c| c.id != id);
        }
    }
}

/// Registers a new connection, closing the longest-idle one at the limit; false when
/// every connection is busy.
fn admit(registry: &Registry, id: u64, conn: &UnixStream) -> bool {
    let Ok(clone) = conn.try_clone() else { return false };
    let Ok(mut r) = registry.lock() else { return false };
    if r.len() >= MAX_CONNECTIONS {
        let Some(i) = r.iter().enumerate().filter(|(_, c)| !c.busy).min_by_key(|(_, c)| c.last_active).map(|(i, _)| i)
        else {
            return false;
        };
        let old = r.swap_remove(i);
        // Its thread sees end-of-file and ends.
        let _ = old.stream.shutdown(std::net::Shutdown::Both);
    }
    r.push(Conn { id, stream: clone, last_active: Instant::now(), busy: false });
    true
}

fn mark(registry: &Registry, id: u64, busy: bool) {
    if let Ok(mut r) = registry.lock()
        && let Some(c) = r.iter_mut().find(|c| c.id == id)
    {
        c.busy = busy;
        c.last_active = Instant::now();
    }
}

/// How reading a request ended.
enum Line {
    Complete(Vec<u8>),
    Closed,
    TooLong,
    Idle,
    Slow,
}

/// Reads one request line: waits up to `IDLE_TIMEOUT` for its first byte, then up to
/// `REQUEST_TIMEOUT` for the rest.
fn read_line(reader: &mut BufReader<UnixStream>) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut started: Option<Instant> = None;
    loop {
        let timeout = match started {
            None => IDLE_TIMEOUT,
            Some(t) => match REQUEST_TIMEOUT.checked_sub(t.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => return Ok(Line::Slow),
            },
        };
        reader.get_ref().set_read_timeout(Some(timeout))?;
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Ok(if started.is_some() { Line::Slow } else { Line::Idle });
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(if line.is_empty() { Line::Closed } else { Line::Complete(line) });
        }
        started.get_or_insert_with(Instant::now);
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                line.extend_from_slice(&buf[..=i]);
                reader.consume(i + 1);
                return Ok(if line.len() as u64 > MAX_LINE { Line::TooLong } else { Line::Complete(line) });
            }
            None => {
                let n = buf.len();
                line.extend_from_slice(buf);
                reader.consume(n);
                if line.len() as u64 > MAX_LINE {
                    return Ok(Line::TooLong);
                }
            }
        }
    }
}

fn serve(
    conn: UnixStream,
    id: u64,
    client: String,
    tx: Sender<Pending>,
    status: Arc<Mutex<Status>>,
    registry: &Registry,
) -> std::io::Result<()> {
    conn.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    loop {
        let read = read_line(&mut reader)?;
        let step = status.lock().map(|s| s.step).unwrap_or(0);
        let refuse = |message: String| Reply { ok: false, step, message };
        let line = match read {
            Line::Closed | Line::Idle => return Ok(()),
            Line::TooLong => {
                return write_reply(&mut writer, &refuse(format!("request longer than {MAX_LINE} bytes")));
            }
            Line::Slow => {
                let m = format!("request not complete within {} s of its first byte", REQUEST_TIMEOUT.as_secs());
                return write_reply(&mut writer, &refuse(m));
            }
            Line::Complete(bytes) => bytes,
        };
        let line = match String::from_utf8(line) {
            Ok(l) => l,
            Err(e) => {
                let m = format!(
                    "malformed request: not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                );
                write_reply(&mut writer, &refuse(m))?;
                continue;
            }
        };
        mark(registry, id, true);
        let reply = match parse_request(line.trim()) {
            Err(message) => Reply { ok: false, step, message },
            Ok(None) => {
                let s = status.lock().map(|s| s.clone()).unwrap_or_default();
                Reply { ok: true, step: s.step, message: serde_json::to_string(&s).unwrap_or_default() }
            }
            Ok(Some(command)) => {
                let (reply_tx, reply_rx) = mpsc::sync_channel(1);
                if tx.send(Pending { command, client: client.clone(), reply: reply_tx }).is_err() {
                    Reply { ok: false, step, message: "the run is ending".into() }
                } else {
                    reply_rx.recv_timeout(Duration::from_secs(600)).unwrap_or(Reply {
                        ok: false,
                        step,
                        message: "no answer from the trainer".into(),
                    })
                }
            }
        };
        mark(registry, id, false);
        write_reply(&mut writer, &reply)?;
    }
}

/// `Ok(None)` is a status request.
fn parse_request(line: &str) -> Result<Option<Command>, String> {
    let value: serde_json::Value =
        crate::jsonline::from_slice(line.as_bytes()).map_err(|e| format!("malformed request: {e}"))?;
    if value.get("cmd").and_then(|c| c.as_str()) == Some("status") {
        return Ok(None);
    }
    serde_json::from_value(value).map(Some).map_err(|e| format!("invalid command: {e}"))
}

fn write_reply(w: &mut UnixStream, r: &Reply) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(r).expect("reply serialises");
    bytes.push(b'\n');
    w.write_all(&bytes)
}

/// A client's wait to connect and to send its request.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(3);
/// A client's wait for the answer to `status` (the connection's thread answers it).
pub const STATUS_DEADLINE: Duration = Duration::from_secs(5);
/// A client's wait for the answer to a command (the trainer answers between steps).
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(30);

/// Connects to a Unix socket, waiting at most `timeout`. A blocking `connect` waits for
/// ever on a host that is stopped (SIGSTOP) or hung once its accept backlog is full; a
/// non-blocking one says `EAGAIN` then, and is tried again until the deadline.
pub fn connect_within(path: &Path, timeout: Duration) -> std::io::Result<UnixStream> {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: a zeroed sockaddr_un is valid; the path is copied in below, NUL-terminated.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{}: not a usable socket path (too long?)", path.display()),
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = (std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    // SAFETY: a new descriptor, owned by the stream at once.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
        let r = unsafe { libc::connect(stream.as_raw_fd(), (&raw const addr).cast::<libc::sockaddr>(), len) };
        if r == 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EINTR) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Some(libc::EAGAIN) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "{}: the host took no connection within {} s (is it stopped or hung?)",
                        path.display(),
                        timeout.as_secs()
                    ),
                ));
            }
            _ => return Err(e),
        }
    }
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Sends one request and waits for its reply, each part with a deadline
/// ([`CONNECT_DEADLINE`], then [`STATUS_DEADLINE`] or [`COMMAND_DEADLINE`]): a host that
/// is stopped or hung gives an error of kind `TimedOut` that says so.
pub fn request(socket: &Path, body: &serde_json::Value) -> std::io::Result<Reply> {
    let status = body.get("cmd").and_then(|c| c.as_str()) == Some("status");
    let wait = if status { STATUS_DEADLINE } else { COMMAND_DEADLINE };
    let mut conn = connect_within(socket, CONNECT_DEADLINE)?;
    conn.set_write_timeout(Some(CONNECT_DEADLINE))?;
    conn.set_read_timeout(Some(wait))?;
    let mut line = serde_json::to_vec(body)?;
    line.push(b'\n');
    let timed_out = |e: std::io::Error, what: &str| {
        if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
            std::io::Error::new(std::io::ErrorKind::TimedOut, format!("the host {what} (is it stopped or hung?)"))
        } else {
            e
        }
    };
    conn.write_all(&line)
        .map_err(|e| timed_out(e, &format!("took no request within {} s", CONNECT_DEADLINE.as_secs())))?;
    let mut answer = String::new();
    BufReader::new(conn).read_line(&mut answer).map_err(|e| {
        let more = if status { "" } else { "; the command may still be applied at its next step" };
        timed_out(e, &format!("did not answer within {} s{more}", wait.as_secs()))
    })?;
    crate::jsonline::from_slice(answer.as_bytes()).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
