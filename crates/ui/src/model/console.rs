//! The run's own output, for the console pane: an external run's `job.log` (what the
//! script printed) and the built-in host's `host.log`, followed as they grow. Reading is
//! bounded (the last 256 KiB at open, at most 1 MiB a poll, the newest 5 000 lines
//! kept) and the text is made safe for the terminal: escape sequences and control
//! characters are dropped, and a carriage return (a progress bar redrawing its line,
//! as tqdm does) keeps only what was written after it.

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Lines kept; older ones scroll out of the pane for good.
pub const MAX_LINES: usize = 5_000;
/// How far back the first read starts.
const FIRST_READ: u64 = 256 << 10;
/// The most read in one poll (a job printing faster is caught up over several).
const POLL_READ: u64 = 1 << 20;
/// A line longer than this is cut (a log line of megabytes would be one line).
const MAX_LINE: usize = 4096;

/// One followed file.
#[derive(Debug)]
struct Source {
    path: PathBuf,
    /// The name shown before its lines when there are several sources.
    label: String,
    offset: u64,
    /// The unfinished last line.
    partial: Vec<u8>,
    /// The file was found (it may appear later: a job that has not printed yet).
    seen: bool,
}

#[derive(Debug, Default)]
pub struct Console {
    sources: Vec<Source>,
    pub lines: VecDeque<String>,
    /// Lines that scrolled out of [`MAX_LINES`] or were skipped by the first read.
    pub dropped: u64,
}

impl Console {
    /// The console of the run at `run_dir`: its `job.log` and `host.log`, those that
    /// exist now or appear later.
    pub fn for_run(run_dir: &Path) -> Console {
        let names = [crate::rundir::JOB_LOG, crate::rundir::HOST_LOG];
        let sources = names
            .iter()
            .map(|n| Source {
                path: run_dir.join(n),
                label: n.to_string(),
                offset: 0,
                partial: Vec::new(),
                seen: false,
            })
            .collect();
        Console { sources, lines: VecDeque::new(), dropped: 0 }
    }

    /// The files it follows, as the pane's title names them.
    pub fn names(&self) -> Vec<&str> {
        self.sources.iter().filter(|s| s.seen).map(|s| s.label.as_str()).collect()
    }

    /// Reads what was appended since the last poll; true when lines were added.
    pub fn poll(&mut self) -> bool {
        let several = self.sources.iter().filter(|s| s.seen || s.path.is_file()).count() > 1;
        let mut added = false;
        for i in 0..self.sources.len() {
            let (bytes, label) = {
                let s = &mut self.sources[i];
                match read_new(s) {
                    Some(b) if !b.is_empty() => (b, s.label.clone()),
                    _ => continue,
                }
            };
            let mut text = std::mem::take(&mut self.sources[i].partial);
            text.extend_from_slice(&bytes);
            let mut rest: &[u8] = &text;
            while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
                let line = clean(&rest[..nl]);
                self.push(if several { format!("{label}│ {line}") } else { line });
                rest = &rest[nl + 1..];
                added = true;
            }
            // An unfinished line waits for its end (cut if it never comes).
            let keep = rest.len().min(MAX_LINE);
            self.sources[i].partial = rest[rest.len() - keep..].to_vec();
        }
        added
    }

    fn push(&mut self, line: String) {
        if self.lines.len() == MAX_LINES {
            self.lines.pop_front();
            self.dropped += 1;
        }
        self.lines.push_back(line);
    }
}

/// The bytes appended to `s`'s file since its offset (from near the end on the first
/// read); `None` when there is no such regular file. A file that shrank (rotated,
/// truncated) is read again from its start.
fn read_new(s: &mut Source) -> Option<Vec<u8>> {
    // A regular file only: a FIFO at that name would block the dashboard.
    let meta = std::fs::metadata(&s.path).ok().filter(|m| m.is_file())?;
    let mut f = std::fs::File::open(&s.path).ok()?;
    let len = meta.len();
    if !s.seen {
        s.seen = true;
        s.offset = len.saturating_sub(FIRST_READ);
    }
    if len < s.offset {
        s.offset = 0;
        s.partial.clear();
    }
    f.seek(SeekFrom::Start(s.offset)).ok()?;
    let mut buf = Vec::new();
    f.take(POLL_READ).read_to_end(&mut buf).ok()?;
    s.offset += buf.len() as u64;
    Some(buf)
}

/// One line as the pane shows it: after its last carriage return, escape sequences and
/// control characters dropped, at most [`MAX_LINE`] bytes (at a character boundary).
fn clean(line: &[u8]) -> String {
    let line = match line.iter().rposition(|&b| b == b'\r') {
        // "…\r" at the very end is a line ending (CRLF), not a redraw.
        Some(cr) if cr + 1 < line.len() => &line[cr + 1..],
        Some(cr) => &line[..cr],
        None => line,
    };
    let text = phasetop_core::remote::sanitize(line, &mut Default::default());
    let text = text.replace('\t', "    ");
    if text.len() <= MAX_LINE {
        return text;
    }
    let mut cut = MAX_LINE;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn follows_appended_lines_and_keeps_the_last_redraw_of_a_progress_bar() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Console::for_run(dir.path());
        assert!(!c.poll(), "no files yet");
        let mut f = std::fs::File::create(dir.path().join("job.log")).unwrap();
        f.write_all(b"epoch 1\n 10%|#  |\r 50%|### |\r100%|#####|\nhalf a li").unwrap();
        assert!(c.poll());
        assert_eq!(c.lines, ["epoch 1", "100%|#####|"]);
        f.write_all(b"ne\n\x1b[31mred\x1b[0m\tand a bell\x07\r\n").unwrap();
        assert!(c.poll());
        assert_eq!(c.lines, ["epoch 1", "100%|#####|", "half a line", "red    and a bell"]);
        assert!(!c.poll(), "nothing new");
        assert_eq!(c.names(), ["job.log"]);
    }

    #[test]
    fn two_sources_are_labelled_and_a_truncated_file_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("job.log"), "from the job\n").unwrap();
        std::fs::write(dir.path().join("host.log"), "from the host\n").unwrap();
        let mut c = Console::for_run(dir.path());
        c.poll();
        assert_eq!(c.lines, ["job.log│ from the job", "host.log│ from the host"]);
        std::fs::write(dir.path().join("job.log"), "again\n").unwrap();
        c.poll();
        assert_eq!(c.lines.back().map(String::as_str), Some("job.log│ again"));
    }

    #[test]
    fn reading_is_bounded_by_lines_kept_and_line_length() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..(MAX_LINES + 10) {
            text.push_str(&format!("line {i}\n"));
        }
        text.push_str(&"é".repeat(MAX_LINE));
        text.push('\n');
        std::fs::write(dir.path().join("job.log"), text).unwrap();
        let mut c = Console::for_run(dir.path());
        c.poll();
        assert_eq!(c.lines.len(), MAX_LINES);
        assert_eq!(c.dropped, 11);
        let last = c.lines.back().unwrap();
        assert!(last.len() <= MAX_LINE + '…'.len_utf8() && last.ends_with('…'), "{}", last.len());
    }
}
