//! Opening a file a user named (a config, a task's data, a TorchScript module) without
//! trusting what it is. A FIFO blocks `open` until a writer comes and then never ends,
//! `/dev/zero` and `/dev/urandom` never end at all: so the file is opened with
//! `O_NONBLOCK` (a FIFO's open returns at once), looked at with `fstat` on that same
//! descriptor, and refused unless it is a regular file. Reads are bounded by a limit the
//! caller chooses.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// What a file that is not regular is, for the error.
fn kind(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading if it is a regular file; `what` says what it should be
/// ("CSV file": "cannot open CSV file: …"). The error is a sentence naming the path.
pub fn open_regular(path: &Path, what: &str) -> Result<File, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("{}: cannot open {what}: {e}", path.display()))?;
    let meta = file.metadata().map_err(|e| format!("{}: cannot read {what}: {e}", path.display()))?;
    if !meta.file_type().is_file() {
        let is = kind(meta.file_type());
        return Err(format!("{}: is {is}, not a regular file (expected {what})", path.display()));
    }
    Ok(file)
}

/// [`open_regular`], then the whole file if it is at most `limit` bytes.
pub fn read_regular(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>, String> {
    let file = open_regular(path, what)?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > limit {
        return Err(format!("{}: {len} bytes; {what} is at most {limit} bytes", path.display()));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // `take`: a file that grows while it is read still stops at the limit.
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| format!("{}: cannot read {what}: {e}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(format!("{}: more than {limit} bytes; {what} is at most {limit} bytes", path.display()));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_files_are_refused_at_once_and_reads_are_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Without a writer, a blocking open would never return.
        let e = open_regular(&fifo, "CSV file").unwrap_err();
        assert!(e.contains("is a FIFO") && e.contains("fifo"), "{e}");
        let e = read_regular(Path::new("/dev/zero"), "the config", 1 << 20).unwrap_err();
        assert!(e.contains("/dev/zero: is a character device"), "{e}");
        let e = open_regular(tmp.path(), "CSV file").unwrap_err();
        assert!(e.contains("is a directory"), "{e}");
        let f = tmp.path().join("f");
        std::fs::write(&f, b"0123456789").unwrap();
        assert_eq!(read_regular(&f, "x", 10).unwrap(), b"0123456789");
        assert!(read_regular(&f, "x", 9).unwrap_err().contains("at most 9 bytes"));
    }
}
