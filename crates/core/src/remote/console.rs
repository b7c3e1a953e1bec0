//! A remote run's console output (`job.log`, `host.log`) over the stream, so the
//! dashboard's console pane works on a remote attach as on a local one: the mirror asks
//! for it ([`ConsoleMirror::subscription`]), the stream tails the files
//! ([`ConsoleTail`]) and sends what they gain as `console` frames, and the mirror
//! writes them into its own run directory under the same names, where the pane reads
//! them.
//!
//! The request travels as a command request (`{"cmd":"console","from":{…}}`) that the
//! stream answers itself: a stream from before this feature passes it to the host,
//! which refuses it harmlessly, and sends no console frames; a mirror from before never
//! asks, so it never meets a frame it does not know.

use super::proto::ConsoleChunk;
use crate::rundir::{HOST_LOG, JOB_LOG};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The files a run's console is made of; the only names a mirror writes.
pub const FILES: [&str; 2] = [JOB_LOG, HOST_LOG];
/// The command name of the subscription (answered by the stream, never by the host).
pub const COMMAND: &str = "console";
/// The request id of the subscription: its reply is not waited for.
pub const REQUEST_ID: u64 = 0;
/// Where a first look starts: the last this many bytes (the pane shows the newest lines).
const FIRST_READ: u64 = 256 << 10;
/// The most one frame carries (a job printing faster is caught up over several polls).
const CHUNK: u64 = 256 << 10;

/// The stream's side: follows the console files of the run at `dir` from the offsets
/// the mirror asked for.
#[derive(Debug)]
pub struct ConsoleTail {
    dir: PathBuf,
    /// Per file: the next offset to send (None: not looked at yet → its last
    /// [`FIRST_READ`] bytes).
    offsets: BTreeMap<&'static str, Option<u64>>,
}

impl ConsoleTail {
    /// From a subscription's body: `from` maps a file to the offset the mirror holds up
    /// to (absent or null: start near the end). Unknown names are ignored.
    pub fn from_request(dir: &Path, body: &serde_json::Value) -> ConsoleTail {
        let from = body.get("from");
        let offsets =
            FILES.iter().map(|f| (*f, from.and_then(|m| m.get(*f)).and_then(serde_json::Value::as_u64))).collect();
        ConsoleTail { dir: dir.to_path_buf(), offsets }
    }

    /// What each file gained since the last poll, at most [`CHUNK`] bytes of each. A
    /// file that shrank (truncated or replaced) is read again from its start.
    pub fn poll(&mut self) -> Vec<ConsoleChunk> {
        let mut chunks = Vec::new();
        for (name, offset) in self.offsets.iter_mut() {
            let Ok(mut f) = crate::files::open_regular(&self.dir.join(name), "console file") else { continue };
            let Ok(len) = f.metadata().map(|m| m.len()) else { continue };
            let at = match *offset {
                None => len.saturating_sub(FIRST_READ),
                Some(o) if o > len => 0,
                Some(o) => o,
            };
            if at >= len {
                *offset = Some(at);
                continue;
            }
            let mut bytes = Vec::new();
            if f.seek(SeekFrom::Start(at)).is_err() || f.take(CHUNK.min(len - at)).read_to_end(&mut bytes).is_err() {
                continue;
            }
            let (text, used) = text_of(&bytes);
            if used == 0 {
                continue;
            }
            *offset = Some(at + used as u64);
            chunks.push(ConsoleChunk { file: name.to_string(), at, next: at + used as u64, text });
        }
        chunks
    }
}

/// `bytes` as text for a JSON frame, and how many of them it used: a character cut at
/// the end (block-buffered output is flushed at any byte) waits for the rest; bytes that
/// are not UTF-8 become U+FFFD (the pane shows text, never raw bytes).
fn text_of(bytes: &[u8]) -> (String, usize) {
    // A character's first bytes within the last three, with nothing invalid after them.
    let from = bytes.len().saturating_sub(3);
    let used = (from..bytes.len())
        .find(|&i| std::str::from_utf8(&bytes[i..]).is_err_and(|e| e.valid_up_to() == 0 && e.error_len().is_none()))
        .unwrap_or(bytes.len());
    (String::from_utf8_lossy(&bytes[..used]).into_owned(), used)
}

/// The mirror's side: writes console frames into the mirror's run directory and
/// remembers, per file, the remote offset its copy reaches (for a reconnect's request).
#[derive(Debug)]
pub struct ConsoleMirror {
    dir: PathBuf,
    held: BTreeMap<String, u64>,
}

impl ConsoleMirror {
    /// A fresh copy in `dir`: console files left there by an earlier visit are removed
    /// (their remote offsets are not known any more).
    pub fn new(dir: &Path) -> ConsoleMirror {
        for f in FILES {
            let _ = std::fs::remove_file(dir.join(f));
        }
        ConsoleMirror { dir: dir.to_path_buf(), held: BTreeMap::new() }
    }

    /// The subscription's command body: what this copy holds of each file.
    pub fn subscription(&self) -> serde_json::Value {
        serde_json::json!({ "cmd": COMMAND, "from": self.held })
    }

    /// Writes one frame. A name that is not a console file is refused (the frame comes
    /// from the far side: it never names a path here); a chunk that does not continue
    /// the copy (the remote file was truncated, or this is the first) starts it again.
    pub fn write(&mut self, chunk: &ConsoleChunk) -> std::io::Result<()> {
        let Some(name) = FILES.iter().find(|f| **f == chunk.file) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a console file: {:?}", chunk.file),
            ));
        };
        let path = self.dir.join(name);
        let mut f = if self.held.get(*name) == Some(&chunk.at) {
            crate::modes::append_file(&path)?
        } else {
            crate::modes::create_file(&path)?
        };
        f.write_all(chunk.text.as_bytes())?;
        self.held.insert(name.to_string(), chunk.next);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(path: &Path, bytes: &[u8]) {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        f.write_all(bytes).unwrap();
    }

    /// The stream's tail and the mirror's copy together, as over a link: the copy
    /// follows appends, holds a character cut by a chunk's end, starts again after a
    /// truncation, and a reconnect's subscription goes on where the copy is.
    #[test]
    fn the_copy_follows_the_remote_files() {
        let (remote, local) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let job = remote.path().join(JOB_LOG);
        append(&job, "epoch 1\n".as_bytes());
        let mut mirror = ConsoleMirror::new(local.path());
        let mut tail = ConsoleTail::from_request(remote.path(), &mirror.subscription());
        let pump = |tail: &mut ConsoleTail, mirror: &mut ConsoleMirror| {
            for c in tail.poll() {
                mirror.write(&c).unwrap();
            }
        };
        pump(&mut tail, &mut mirror);
        let copy = || std::fs::read_to_string(local.path().join(JOB_LOG)).unwrap_or_default();
        assert_eq!(copy(), "epoch 1\n");
        assert!(!local.path().join(HOST_LOG).exists(), "no host.log remotely, none here");
        // A character split across two writes (a poll between them) arrives whole.
        let check = "✓".as_bytes();
        append(&job, b"loss 0.5 ");
        append(&job, &check[..1]);
        pump(&mut tail, &mut mirror);
        assert_eq!(copy(), "epoch 1\nloss 0.5 ", "the cut character waits");
        append(&job, &check[1..]);
        append(&job, b"\n");
        pump(&mut tail, &mut mirror);
        assert_eq!(copy(), "epoch 1\nloss 0.5 ✓\n");
        // A reconnect: a new tail from the mirror's subscription sends only what is new.
        let mut again = ConsoleTail::from_request(remote.path(), &mirror.subscription());
        append(&job, b"epoch 2\n");
        pump(&mut again, &mut mirror);
        assert!(copy().ends_with("epoch 2\n") && copy().matches("epoch 1").count() == 1, "{}", copy());
        // Truncated remotely: the copy starts again.
        std::fs::write(&job, b"fresh\n").unwrap();
        pump(&mut again, &mut mirror);
        assert_eq!(copy(), "fresh\n");
    }

    #[test]
    fn a_cut_character_waits_for_the_rest() {
        let s = "a✓".as_bytes();
        assert_eq!(text_of(&s[..2]), ("a".to_string(), 1));
        assert_eq!(text_of(&s[..3]), ("a".to_string(), 1));
        assert_eq!(text_of(b"x\xffy"), ("x\u{fffd}y".to_string(), 3));
        // An invalid byte before a cut character: replaced now, the cut one held.
        let mut b = b"x\xff".to_vec();
        b.extend_from_slice(&s[1..3]);
        assert_eq!(text_of(&b), ("x\u{fffd}".to_string(), 2));
        assert_eq!(text_of(s), ("a✓".to_string(), 4));
    }

    /// The first look at a long file starts near its end, not at its start.
    #[test]
    fn a_first_look_takes_the_files_end() {
        let remote = tempfile::tempdir().unwrap();
        let line = "x".repeat(99) + "\n";
        append(&remote.path().join(HOST_LOG), line.repeat(10_000).as_bytes());
        let mut tail = ConsoleTail::from_request(remote.path(), &serde_json::json!({"cmd": "console"}));
        let chunks = tail.poll();
        assert_eq!(chunks.len(), 1);
        assert_eq!((chunks[0].at, chunks[0].next), (1_000_000 - FIRST_READ, 1_000_000));
    }

    /// A frame naming anything but a console file writes nothing.
    #[test]
    fn the_mirror_writes_only_console_files() {
        let local = tempfile::tempdir().unwrap();
        let mut m = ConsoleMirror::new(local.path());
        for name in ["../escape", "events.log", "/etc/passwd", "job.log/../x", ""] {
            let c = ConsoleChunk { file: name.into(), at: 0, next: 1, text: "x".into() };
            assert!(m.write(&c).is_err(), "{name}");
        }
        let entries: Vec<_> = std::fs::read_dir(local.path()).unwrap().collect();
        assert!(entries.is_empty(), "{entries:?}");
        assert!(!local.path().parent().unwrap().join("escape").exists());
    }
}
