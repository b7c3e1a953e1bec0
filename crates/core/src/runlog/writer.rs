//! Appending to a run log.

use super::compact::{StepKeys, keys_json};
use super::reader::Reader;
use super::{HEADER_LEN, LogError, MAX_PAYLOAD, RECORD_HEADER_LEN, header_bytes};
use crate::event::Event;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long [`Writer::flush_if_due`] lets appended records wait in memory.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(250);

/// Buffered bytes that trigger a write regardless of time.
const BUFFER_LIMIT: usize = 256 << 10;

/// After a gap of `flush_interval` between two `flush_if_due` calls, this many calls
/// flush whatever is buffered (the caller is slow: each step takes a while).
const EAGER_CALLS: u32 = 16;

/// What [`Writer::open_append`] cut off the end of a log: a torn or garbled tail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// Bytes removed.
    pub bytes: u64,
    /// Where they started (the end of the last intact record).
    pub offset: u64,
}

/// Appends events to a log. Records are encoded into an in-memory buffer and reach the
/// OS on [`Writer::flush`], when the buffer passes 256 KiB, on [`Writer::flush_if_due`]
/// once `flush_interval` has passed, and on drop.
///
/// Durability contract: records that reached the OS survive `kill -9` of the writer
/// (not a power loss; [`Writer::sync`] is for that). The caller (the host) calls
/// `flush_if_due` after every append and on its idle ticks (every 100 ms while paused).
/// Then a record reaches the OS within `flush_interval` (250 ms by default) while calls
/// come often; when they come further apart than that (slow training steps), every call
/// flushes, so a record waits at most until the call right after it. There is no
/// background thread: the guarantee of "on disk within a second" holds as long as the
/// caller does not go more than a second between calls with records buffered (call
/// [`Writer::flush`] before something long and unusual, like a big evaluation).
pub struct Writer {
    file: File,
    buf: Vec<u8>,
    /// Logical end of the log (bytes written plus bytes buffered).
    end: u64,
    last_flush: Instant,
    flush_interval: Duration,
    /// Previous `flush_if_due` call, and how many more calls flush unconditionally.
    last_call: Instant,
    eager: u32,
    /// Compact (binary) step records: on in a log whose header says 1.4 or later.
    steps: Option<StepKeys>,
    /// The header's minor version.
    header_minor: u32,
}

impl Writer {
    /// Creates a new log at `path` (which must not exist) and writes its header.
    pub fn create(path: &Path) -> io::Result<Writer> {
        let mode = crate::modes::file_mode_for(path);
        let file = std::os::unix::fs::OpenOptionsExt::mode(OpenOptions::new().write(true).create_new(true), mode)
            .open(path)?;
        crate::modes::set(&file, mode)?;
        let mut w = Writer::from_file(file, 0, crate::event::SCHEMA_MINOR);
        w.buf.extend_from_slice(&header_bytes());
        w.end = HEADER_LEN as u64;
        w.flush()?;
        Ok(w)
    }

    /// Reopens a log to append to it (a resumed run). Checks the header (a newer major
    /// version is refused), scans the records, and truncates a torn or garbled tail to the
    /// end of the last intact record; returns what was cut, for the caller to log. Damage
    /// in the middle of the log is left for readers to skip. A file shorter than the header
    /// that holds a prefix of it (a crash right after `create`) gets a fresh header.
    pub fn open_append(path: &Path) -> io::Result<(Writer, Option<Dropped>)> {
        let mut file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len();
        let minor;
        let good_end = match Reader::new(&mut file) {
            Ok(reader) => {
                // Binary step records only in a log whose header announces them: an
                // older log goes on in JSON, so every reader of its version reads it.
                minor = reader.schema().1;
                let mut reader = reader.framing_only();
                for item in &mut reader {
                    if let Err(p) = item
                        && p.kind == super::ProblemKind::Io
                    {
                        return Err(io::Error::other(p.detail));
                    }
                }
                reader.good_end()
            }
            Err(LogError::TooShort { .. }) => {
                // Only a header prefix is there (parse_header said the magic matches).
                file.set_len(0)?;
                file.seek(SeekFrom::Start(0))?;
                let mut w = Writer::from_file(file, 0, crate::event::SCHEMA_MINOR);
                w.buf.extend_from_slice(&header_bytes());
                w.end = HEADER_LEN as u64;
                w.flush()?;
                let dropped = (len > 0).then_some(Dropped { bytes: len, offset: 0 });
                return Ok((w, dropped));
            }
            Err(e) => return Err(e.into()),
        };
        let dropped = if good_end < len {
            file.set_len(good_end)?;
            Some(Dropped { bytes: len - good_end, offset: good_end })
        } else {
            None
        };
        file.seek(SeekFrom::Start(good_end))?;
        Ok((Writer::from_file(file, good_end, minor), dropped))
    }

    /// A writer at `end` of a log whose header's minor version is `minor`.
    fn from_file(file: File, end: u64, minor: u32) -> Writer {
        let compact = minor >= 4;
        Writer {
            file,
            buf: Vec::with_capacity(BUFFER_LIMIT + 4096),
            end,
            last_flush: Instant::now(),
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            last_call: Instant::now(),
            eager: 0,
            // A fresh table for every writer: recorded before its first use, so a
            // resumed (possibly truncated) log never depends on what came before.
            steps: compact.then(StepKeys::new),
            header_minor: minor,
        }
    }

    /// Writes `step` events as compact binary records (the default for a log whose
    /// header is 1.4 or later) or as JSON (every version's readers read those; tests and
    /// benches write both kinds into one log this way). Refused (false) for a log whose
    /// header predates 1.4.
    pub fn set_compact_steps(&mut self, on: bool) -> bool {
        match (on, self.steps.is_some()) {
            (false, _) => self.steps = None,
            (true, true) => {}
            (true, false) => {
                if self.header_minor < 4 {
                    return false;
                }
                self.steps = Some(StepKeys::new());
            }
        }
        true
    }

    /// End offset of the bytes handed to the OS (the log as another process sees it).
    pub fn flushed(&self) -> u64 {
        self.end - self.buf.len() as u64
    }

    /// The key table binary step records use now (a fresh writer's is empty).
    pub fn key_table(&self) -> Option<&super::KeyTable> {
        self.steps.as_ref().map(StepKeys::table)
    }

    /// Sets how long [`Writer::flush_if_due`] lets records wait (default 250 ms).
    pub fn set_flush_interval(&mut self, interval: Duration) {
        self.flush_interval = interval;
    }

    /// Logical end of the log: the offset the next record will have.
    pub fn offset(&self) -> u64 {
        self.end
    }

    /// Encodes one event into the buffer (no system call unless the buffer is full).
    /// Refuses an event whose JSON exceeds 16 MiB. A `step` becomes a compact binary
    /// record (preceded by its key table's `keys` event when that is due) unless its
    /// names would overgrow the table.
    pub fn append(&mut self, event: &Event) -> io::Result<()> {
        if let Event::Step { step, phase, t, metrics } = event
            && let Some(mut keys) = self.steps.take()
        {
            let result = if keys.admit(phase, metrics) {
                let table = keys.due().then(|| keys_json(keys.table()));
                let r = match table {
                    Some(json) => self.push_frame(|b| {
                        b.extend_from_slice(&json);
                        Ok(())
                    }),
                    None => Ok(0),
                };
                r.and_then(|n| {
                    if n > 0 {
                        keys.recorded();
                    }
                    self.push_frame(|b| {
                        keys.encode(b, *step, phase, *t, metrics);
                        Ok(())
                    })
                })
                .map(|n| keys.wrote(n))
            } else {
                self.push_frame(|b| serde_json::to_writer(b, event).map_err(io::Error::from)).map(|n| keys.wrote(n))
            };
            self.steps = Some(keys);
            return result;
        }
        let n = self.push_frame(|b| serde_json::to_writer(b, event).map_err(io::Error::from))?;
        if let Some(keys) = &mut self.steps {
            keys.wrote(n);
        }
        Ok(())
    }

    /// Frames the payload `fill` writes (length, CRC); returns the record's bytes.
    fn push_frame(&mut self, fill: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> io::Result<u64> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
        if let Err(e) = fill(&mut self.buf) {
            self.buf.truncate(start);
            return Err(e);
        }
        let len = self.buf.len() - start - RECORD_HEADER_LEN;
        if len > MAX_PAYLOAD {
            self.buf.truncate(start);
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("event of {len} bytes exceeds the run log's {MAX_PAYLOAD}-byte record limit"),
            ));
        }
        let crc = crc32c::crc32c(&self.buf[start + RECORD_HEADER_LEN..]);
        self.buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
        self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        let total = (RECORD_HEADER_LEN + len) as u64;
        self.end += total;
        if self.buf.len() >= BUFFER_LIMIT {
            self.write_out()?;
        }
        Ok(total)
    }

    /// Appends a payload that is already an event's JSON (a remote run's mirror writes
    /// the bytes of the source log back, unchanged). Refuses one that is not an event.
    pub fn append_raw(&mut self, payload: &[u8]) -> io::Result<Event> {
        let event: Event = serde_json::from_slice(payload)?;
        if payload.len() > MAX_PAYLOAD || payload.len() < 2 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("payload of {} bytes", payload.len())));
        }
        let crc = crc32c::crc32c(payload);
        self.buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf.extend_from_slice(payload);
        self.end += (RECORD_HEADER_LEN + payload.len()) as u64;
        if self.buf.len() >= BUFFER_LIMIT {
            self.write_out()?;
        }
        Ok(event)
    }

    /// Hands buffered records to the OS (they then survive the process being killed).
    pub fn flush(&mut self) -> io::Result<()> {
        self.last_flush = Instant::now();
        self.write_out()
    }

    /// Flushes when records are buffered and `flush_interval` has passed since the last
    /// flush, or when calls have recently come more than `flush_interval` apart. Cheap
    /// (one clock read); call it after every append and on idle ticks.
    pub fn flush_if_due(&mut self) -> io::Result<()> {
        let now = Instant::now();
        if now.duration_since(self.last_call) >= self.flush_interval {
            self.eager = EAGER_CALLS;
        } else {
            self.eager = self.eager.saturating_sub(1);
        }
        self.last_call = now;
        if !self.buf.is_empty() && (self.eager > 0 || now.duration_since(self.last_flush) >= self.flush_interval) {
            self.flush()?;
        }
        Ok(())
    }

    /// Flushes and asks the OS to put the log on stable storage (fsync).
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        self.file.sync_all()
    }

    /// Writes the buffer out. On failure the buffered records are discarded (the file may
    /// end in a torn record, which readers skip) and the error is returned.
    fn write_out(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = self.file.write_all(&self.buf);
        self.buf.clear();
        result
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}
