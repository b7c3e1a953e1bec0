//! Remote runs over the user's own `ssh` (docs/REMOTE.md).
//!
//! `user@host:runs/<id>` names a run on another machine. The local side runs the user's
//! `ssh` (their keys, config and jump hosts: no port opened, no second auth system) with
//! `phasetop stream RUN` on the far end ([`stream`]), which sends the run's events from an
//! offset as framed JSON lines on stdout and takes commands on stdin. [`mirror`] keeps a
//! local copy of the stream as an ordinary run directory, so the dashboard attaches to a
//! remote run exactly as to a local one, and reconnects after a dropped link from the
//! last offset it had.

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
}
