//! Remote runs over the user's own `ssh` (docs/REMOTE.md).
//!
//! `user@host:runs/<id>` names a run on another machine. The local side runs the user's
//! `ssh` (their keys, config and jump hosts: no port opened, no second auth system) with
//! `phasetop stream RUN` on the far end ([`stream`]), which sends the run's events from an
//! offset as framed JSON lines on stdout and takes commands on stdin. [`mirror`] keeps a
//! local copy of the stream as an ordinary run directory, so the dashboard attaches to a
//! remote run exactly as to a local one, and reconnects after a dropped link from the
//! last offset it had; [`console`] copies the run's console output (`job.log`,
//! `host.log`) the same way.

pub mod console;
pub mod mirror;
pub mod proto;
pub mod stream;

use std::ffi::OsString;
use std::path::PathBuf;

/// `[user@]host:path`: a run (or, for `ls`, a runs directory) on another machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// What `ssh` is given: `user@host`, `host`, or an alias from the user's ssh config.
    pub host: String,
    /// The path on the remote machine (relative to the login directory), maybe empty.
    pub path: String,
}

impl Spec {
    /// Parses `host:path` as `scp` does: a colon before any slash, and not an existing
    /// local path (so `./a:b` and a local `a:b` stay local).
    pub fn parse(s: &str) -> Option<Spec> {
        let (host, path) = s.split_once(':')?;
        if host.is_empty() || host.contains('/') || std::path::Path::new(s).exists() {
            return None;
        }
        Some(Spec { host: host.to_string(), path: path.to_string() })
    }

    /// The run's id: the last component of its path.
    pub fn run_id(&self) -> String {
        let p = self.path.trim_end_matches('/');
        p.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or("run").to_string()
    }
}

impl std::fmt::Display for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.path)
    }
}

/// The local ssh command: `$PHASETOP_SSH` (split on whitespace, e.g. `ssh -F cfg -p 2222`)
/// or `ssh`.
pub fn ssh_command() -> Vec<OsString> {
    match std::env::var("PHASETOP_SSH") {
        Ok(s) if !s.trim().is_empty() => s.split_whitespace().map(OsString::from).collect(),
        _ => vec!["ssh".into()],
    }
}

/// The `phasetop` program on the remote side: `$PHASETOP_REMOTE_BIN` or `phasetop` (found
/// on the remote login's PATH).
pub fn remote_bin() -> String {
    std::env::var("PHASETOP_REMOTE_BIN").ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "phasetop".into())
}

/// Quotes one word for the remote POSIX shell (ssh joins its arguments into one command
/// line the remote shell parses).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// An `ssh` process running `phasetop ARGS…` on `host`: the user's ssh, no tty (`-T`),
/// keep-alives so a dead link is noticed, and with `batch` no prompts (a reconnect
/// behind the dashboard's screen).
pub fn ssh_phasetop(host: &str, args: &[&str], batch: bool) -> std::process::Command {
    let ssh = ssh_command();
    let mut cmd = std::process::Command::new(&ssh[0]);
    cmd.args(&ssh[1..]);
    if batch {
        cmd.args(["-o", "BatchMode=yes"]);
    }
    cmd.args(["-T", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "--", host]);
    let mut line = vec![shell_quote(&remote_bin())];
    line.extend(args.iter().map(|a| shell_quote(a)));
    cmd.arg(line.join(" "));
    cmd
}

/// How long a remote command waits for its first frame (or, for `ls`/`ctl`, its first
/// output): `$PHASETOP_REMOTE_TIMEOUT_S` seconds, default [`DEFAULT_FIRST_FRAME_TIMEOUT`];
/// `0` waits for ever (e.g. while typing a password at ssh's prompt is slow).
pub fn first_frame_timeout() -> Option<std::time::Duration> {
    let secs = std::env::var("PHASETOP_REMOTE_TIMEOUT_S").ok().and_then(|s| s.trim().parse::<f64>().ok());
    match secs.filter(|s| s.is_finite() && *s >= 0.0) {
        None => Some(DEFAULT_FIRST_FRAME_TIMEOUT),
        Some(s) if s > 0.0 => Some(std::time::Duration::from_secs_f64(s.min(86_400.0))),
        Some(_) => None,
    }
}

/// The default of [`first_frame_timeout`].
pub const DEFAULT_FIRST_FRAME_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// What to say when the remote side said nothing before the deadline.
pub fn no_answer(host: &str, waited: std::time::Duration, ssh_said: &str) -> String {
    let mut m = format!(
        "{host}: no answer within {} s; check that `ssh {host} {} --version` works (host reachable, keys or \
         agent loaded, no prompt waiting); PHASETOP_REMOTE_TIMEOUT_S sets the wait (0: no limit)",
        waited.as_secs_f64().round(),
        remote_bin()
    );
    if !ssh_said.trim().is_empty() {
        m.push_str("; ssh said: ");
        m.push_str(ssh_said.trim());
    }
    m
}

/// A hint for a remote command that failed to start: the remote shell did not find
/// `phasetop` (exit 127, "command not found", "No such file"), or None.
pub fn missing_bin_hint(host: &str, code: Option<i32>, stderr: &str) -> Option<String> {
    let bin = remote_bin();
    let missing = code == Some(127)
        || stderr.contains("command not found")
        || (stderr.contains(bin.as_str()) && stderr.contains("No such file"));
    missing.then(|| {
        format!(
            "`{bin}` is not found on {host}: install phasetop there (on the PATH a non-interactive \
             `ssh {host} CMD` gets) or set PHASETOP_REMOTE_BIN to its path on {host}"
        )
    })
}

/// Text from the remote side made safe for the user's terminal: UTF-8 (invalid bytes
/// replaced), escape sequences (CSI, OSC, DCS and other `ESC x`) removed, and every other
/// control character except newline and tab dropped — a hostile or broken remote cannot
/// drive the terminal. `state` carries an unfinished sequence across calls.
pub fn sanitize(bytes: &[u8], state: &mut Sanitize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        *state = match (*state, c) {
            (Sanitize::Text, '\u{1b}') => Sanitize::Esc,
            (Sanitize::Text, '\u{9b}') => Sanitize::Csi,
            (Sanitize::Text, '\u{9d}' | '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}') => Sanitize::Str,
            (Sanitize::Text, c) => {
                if c == '\n' || c == '\t' || !c.is_control() {
                    out.push(c);
                }
                Sanitize::Text
            }
            (Sanitize::Esc, '[') => Sanitize::Csi,
            (Sanitize::Esc, ']' | 'P' | 'X' | '^' | '_') => Sanitize::Str,
            // `ESC (`, `ESC #` and the like take one more character.
            (Sanitize::Esc, ' '..='/') => Sanitize::EscArg,
            (Sanitize::Esc | Sanitize::EscArg, _) => Sanitize::Text,
            (Sanitize::Csi, '\u{40}'..='\u{7e}') => Sanitize::Text,
            (Sanitize::Csi, '\n') => {
                out.push('\n');
                Sanitize::Text
            }
            (Sanitize::Csi, _) => Sanitize::Csi,
            (Sanitize::Str, '\u{7}' | '\u{9c}') => Sanitize::Text,
            (Sanitize::Str, '\u{1b}') => Sanitize::StrEsc,
            (Sanitize::StrEsc, '\\') => Sanitize::Text,
            (Sanitize::Str | Sanitize::StrEsc, _) => Sanitize::Str,
        };
    }
    out
}

/// Where [`sanitize`] is inside an escape sequence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sanitize {
    #[default]
    Text,
    Esc,
    EscArg,
    Csi,
    /// An OSC/DCS/APC/PM/SOS string, up to BEL or ST.
    Str,
    StrEsc,
}

/// The last `max` bytes of what a child wrote on `stderr`, read for at most `within`
/// (a grandchild holding the pipe open cannot block the caller), sanitized.
pub fn stderr_tail(stderr: Option<std::process::ChildStderr>, within: std::time::Duration, max: usize) -> String {
    use std::io::Read;
    let Some(mut err) = stderr else { return String::new() };
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let spawned = std::thread::Builder::new().name("ssh-stderr".into()).spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    if spawned.is_err() {
        return String::new();
    }
    let deadline = std::time::Instant::now() + within;
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => {
                got.extend_from_slice(&chunk);
                if got.len() > 2 * max {
                    got.drain(..got.len() - max);
                }
            }
            Err(_) => break,
        }
    }
    let start = got.len().saturating_sub(max);
    sanitize(&got[start..], &mut Sanitize::default()).trim().to_string()
}

/// Where the local mirrors of remote runs live: `$XDG_CACHE_HOME/phasetop/remote`, else
/// `~/.cache/phasetop/remote`.
pub fn cache_root() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("phasetop").join("remote")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_like_scp() {
        assert_eq!(Spec::parse("me@box:runs/a"), Some(Spec { host: "me@box".into(), path: "runs/a".into() }));
        assert_eq!(Spec::parse("box:").map(|s| s.path), Some(String::new()));
        assert_eq!(Spec::parse("runs/a:b"), None);
        assert_eq!(Spec::parse("runs/a"), None);
        assert_eq!(Spec::parse(":x"), None);
        assert_eq!(Spec::parse("h:/abs/runs/r1/").unwrap().run_id(), "r1");
    }

    #[test]
    fn quoting_survives_the_remote_shell() {
        assert_eq!(shell_quote("runs/a-1"), "runs/a-1");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        // A real shell reads them back.
        for w in ["a b", "it's", "$HOME", "x;rm -rf /", ""] {
            let out = std::process::Command::new("sh").args(["-c", &format!("printf %s {}", shell_quote(w))]).output();
            if let Ok(out) = out {
                assert_eq!(String::from_utf8_lossy(&out.stdout), w);
            }
        }
    }

    #[test]
    fn sanitize_keeps_text_and_drops_escapes() {
        let mut st = Sanitize::default();
        let hostile = b"ok \x1b[2J\x1b[31mred\x1b[0m \x1b]0;title\x07\x1b]52;c;aGk=\x1b\\x\x07\x08\r\n\tnext \xc2\x9b1mq \xff\x1b(Bz\n";
        assert_eq!(sanitize(hostile, &mut st), "ok red x\n\tnext q \u{fffd}z\n");
        // A sequence cut between two reads stays cut.
        let mut st = Sanitize::default();
        assert_eq!(sanitize(b"a\x1b[3", &mut st), "a");
        assert_eq!(sanitize(b"1mb", &mut st), "b");
        assert_eq!(sanitize("héllo wörld".as_bytes(), &mut Sanitize::default()), "héllo wörld");
    }

    #[test]
    fn a_missing_remote_binary_gets_a_hint() {
        let h = missing_bin_hint("box", Some(127), "bash: line 1: phasetop: command not found").unwrap();
        assert!(h.contains("PHASETOP_REMOTE_BIN") && h.contains("box"), "{h}");
        assert!(missing_bin_hint("box", Some(1), "no such run").is_none());
    }
}
