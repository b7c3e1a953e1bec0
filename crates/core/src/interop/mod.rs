//! Interchange with other tools: `phasetop export` (CSV, JSON lines, TensorBoard event
//! files) and `phasetop import` (TensorBoard scalars into a new run directory). See
//! docs/INTEROP.md for the formats, the tag mapping and the errors.
//!
//! - [`tfrecord`]: TFRecord framing (length, masked CRC32C) over any bytes.
//! - [`proto`]: the few TensorBoard protobuf messages we read and write.
//! - [`export`] / [`import`]: the commands.
//!
//! Nothing here panics on any input bytes: damage is a [`DataError`] naming the file and
//! the byte offset.

pub mod export;
pub mod import;
pub mod proto;
pub mod tfrecord;

use std::path::{Path, PathBuf};

pub use export::{Format, export};
pub use import::{ImportReport, import};

/// Input that cannot be used: names the file and, where it applies, the byte offset.
/// Reported with exit code 1 (unreadable data), unlike usage errors (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", path.display(), offset.map(|o| format!(" at byte {o}")).unwrap_or_default())]
pub struct DataError {
    pub path: PathBuf,
    pub offset: Option<u64>,
    pub message: String,
}

impl DataError {
    pub fn new(path: impl Into<PathBuf>, offset: Option<u64>, message: impl Into<String>) -> DataError {
        DataError { path: path.into(), offset, message: message.into() }
    }
}

/// A run log that cannot be read at all, as an error naming the file and the byte
/// (`runs/x/events.log at byte 8: written by a newer phasetop …`).
pub fn log_error(log: &Path, e: crate::runlog::LogError) -> anyhow::Error {
    match e {
        crate::runlog::LogError::Io { .. } => anyhow::Error::new(e),
        other => DataError::new(log, other.offset(), other.to_string()).into(),
    }
}
