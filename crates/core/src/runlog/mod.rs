//! The run log: an append-only file of [`Event`]s, `events.log` in a run directory.
//!
//! The format is a documented contract (docs/RUNLOG.md):
//!
//! ```text
//! header  : b"PHTOPLOG" | u32 LE schema major | u32 LE schema minor      (16 bytes)
//! record  : u32 LE payload length | u32 LE CRC32C(payload) | payload     (repeated)
//! payload : UTF-8 JSON of one Event, {"type":"step",...}; 2 ..= 16 MiB bytes
//!           or (1.4) a compact binary step record, tag 0x01 (`compact`)
//! ```
//!
//! - [`Writer`] appends (buffered; `flush_if_due` on every step keeps it at most
//!   `flush_interval` behind), and on resume truncates a torn tail.
//! - [`Reader`] streams records and [`Problem`]s from any `Read`; [`read_all`] collects.
//!   After a damaged span it resynchronises on the next record whose length, CRC and
//!   JSON braces check out, and reports the span once.
//! - [`Tail`] follows a live log: each `poll` returns the complete records appended
//!   since the last one and leaves a half-written record for the next.
//!
//! Nothing here panics on any input bytes.

mod compact;
mod decode;
mod fast;
mod reader;
mod writer;

pub use compact::{KeyTable, KeyTables, REKEY_EVERY, STEP_TAG};
pub use reader::{Reader, Tail, key_tables_before, key_tables_in, read_all, read_bytes};
pub use writer::{DEFAULT_FLUSH_INTERVAL, Dropped, Writer};

use crate::event::{Event, SCHEMA_MAJOR};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The first 8 bytes of every run log.
pub const MAGIC: &[u8; 8] = b"PHTOPLOG";
/// Magic plus the two schema version words.
pub const HEADER_LEN: usize = 16;
/// Length and CRC words before each payload.
pub const RECORD_HEADER_LEN: usize = 8;
/// A payload longer than this is invalid (treated as corruption).
pub const MAX_PAYLOAD: usize = 16 << 20;

/// One good record: its file offset (of the length word) and its event.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub offset: u64,
    pub event: Event,
}

/// A damaged span of the log (reported once per span, not once per byte).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// File offset where the damage starts.
    pub offset: u64,
    pub kind: ProblemKind,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The final record is incomplete (the writer died mid-record).
    TornTail,
    /// A length word of 0, 1, above 16 MiB, or one that runs past the end of the file
    /// while more good records follow.
    BadLength,
    /// The payload does not match its CRC32C.
    CrcMismatch,
    /// The record is intact but its payload is not the JSON of an event.
    InvalidJson,
    /// The record is intact JSON with an event `type` this build does not know (written
    /// by a newer minor version, usually).
    UnknownEvent,
    /// Reading failed part way (the rest of the file was not read).
    Io,
    /// An intact binary step record whose key table's `keys` event was not read (it was
    /// damaged, or reading started after it without the tables; schema 1.4).
    MissingKeys,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::TornTail => "torn_tail",
            ProblemKind::BadLength => "bad_length",
            ProblemKind::CrcMismatch => "crc_mismatch",
            ProblemKind::InvalidJson => "invalid_json",
            ProblemKind::UnknownEvent => "unknown_event",
            ProblemKind::Io => "io",
            ProblemKind::MissingKeys => "missing_keys",
        }
    }
}

impl std::fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "offset {}: {}: {}", self.offset, self.kind, self.detail)
    }
}

/// Everything in a log: the header's versions, the good records, the damaged spans.
#[derive(Clone, Debug, Default)]
pub struct LogContents {
    pub schema_major: u32,
    pub schema_minor: u32,
    pub records: Vec<Record>,
    pub problems: Vec<Problem>,
}

/// Why a log cannot be read at all. Damage after the header is never an error: it is
/// reported as [`Problem`]s next to the records that could be read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a phasetop run log: {len} bytes, shorter than the {HEADER_LEN}-byte header")]
    TooShort { len: usize },
    #[error("not a phasetop run log: bad magic at offset 0")]
    BadMagic,
    #[error("written by a newer phasetop (schema {major}.x); this build reads {SCHEMA_MAJOR}.x")]
    NewerSchema { major: u32, minor: u32 },
}

impl LogError {
    /// The byte the problem is at, where it is one place in the file.
    pub fn offset(&self) -> Option<u64> {
        match self {
            LogError::BadMagic => Some(0),
            LogError::NewerSchema { .. } => Some(8),
            LogError::TooShort { .. } | LogError::Io { .. } => None,
        }
    }
}

impl From<LogError> for std::io::Error {
    fn from(e: LogError) -> std::io::Error {
        match e {
            LogError::Io { source, .. } => source,
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        }
    }
}

/// The 16 header bytes this build writes.
pub fn header_bytes() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&crate::event::SCHEMA_MAJOR.to_le_bytes());
    h[12..16].copy_from_slice(&crate::event::SCHEMA_MINOR.to_le_bytes());
    h
}

/// Checks a complete 16-byte header; returns (major, minor).
pub(crate) fn parse_header(h: &[u8]) -> Result<(u32, u32), LogError> {
    if h.len() < HEADER_LEN {
        if h.len() < MAGIC.len() && !MAGIC.starts_with(h) {
            return Err(LogError::BadMagic);
        }
        if h.len() >= MAGIC.len() && &h[..8] != MAGIC {
            return Err(LogError::BadMagic);
        }
        return Err(LogError::TooShort { len: h.len() });
    }
    if &h[..8] != MAGIC {
        return Err(LogError::BadMagic);
    }
    let major = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    let minor = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
    if major > SCHEMA_MAJOR {
        return Err(LogError::NewerSchema { major, minor });
    }
    Ok((major, minor))
}
