//! The control socket: `control.sock` in the run directory, mode 0600. One JSON request
//! per line, one JSON reply per line. Requests are a [`Command`] (`{"cmd":"switch",
//! "phase":"main"}`) or `{"cmd":"status"}`. Commands travel to the run loop, which
//! applies them between steps and answers; malformed lines are answered with an error
//! and never reach the trainer.

use crate::event::Command;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest request line accepted.
const MAX_LINE: u64 = 64 * 1024;

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
            if UnixStream::connect(path).is_ok() {
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

fn accept_loop(listener: UnixListener, tx: Sender<Pending>, status: Arc<Mutex<Status>>) {
    for (n, conn) in listener.incoming().enumerate() {
        let Ok(conn) = conn else { continue };
        let (tx, status) = (tx.clone(), status.clone());
        let _ = std::thread::Builder::new().name("control-conn".into()).spawn(move || {
            let _ = serve(conn, format!("socket#{n}"), tx, status);
        });
    }
}

fn serve(conn: UnixStream, client: String, tx: Sender<Pending>, status: Arc<Mutex<Status>>) -> std::io::Result<()> {
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        let n = (&mut reader).take(MAX_LINE).read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        let step = status.lock().map(|s| s.step).unwrap_or(0);
        if !line.ends_with('\n') && n as u64 >= MAX_LINE {
            write_reply(
                &mut writer,
                &Reply { ok: false, step, message: format!("request longer than {MAX_LINE} bytes") },
            )?;
            return Ok(());
        }
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
        write_reply(&mut writer, &reply)?;
    }
}

/// `Ok(None)` is a status request.
fn parse_request(line: &str) -> Result<Option<Command>, String> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("malformed request: {e}"))?;
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

/// Sends one request and waits for its reply.
pub fn request(socket: &Path, body: &serde_json::Value) -> std::io::Result<Reply> {
    let mut conn = UnixStream::connect(socket)?;
    let mut line = serde_json::to_vec(body)?;
    line.push(b'\n');
    conn.write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(conn).read_line(&mut answer)?;
    serde_json::from_str(&answer).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
