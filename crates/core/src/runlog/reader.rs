//! Reading a run log: the streaming [`Reader`], [`read_all`], and the live [`Tail`].

use super::compact::KeyTables;
use super::decode::{Decoder, Mode, Parse};
use super::{HEADER_LEN, LogContents, LogError, Problem, ProblemKind, Record, parse_header};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Bytes read from the file at a time. The decoder holds at most about one chunk, or one
/// record when a record is larger.
const CHUNK: usize = 1 << 20;

/// Streams a log's records and problems from any byte source, holding only a window of
/// its bytes (about 1 MiB). Yields `Ok(Record)` for each good record and `Err(Problem)`
/// once per damaged span, in file order.
pub struct Reader<R: Read = File> {
    src: R,
    dec: Decoder,
    eof: bool,
    done: bool,
    schema: (u32, u32),
}

impl Reader<File> {
    /// Opens a log file and checks its header.
    pub fn open(path: &Path) -> Result<Reader<File>, LogError> {
        let file = File::open(path).map_err(|source| LogError::Io { path: path.to_path_buf(), source })?;
        Reader::new(file).map_err(|e| match e {
            LogError::Io { source, .. } => LogError::Io { path: path.to_path_buf(), source },
            other => other,
        })
    }
}

impl<R: Read> Reader<R> {
    /// Reads and checks the 16-byte header from `src`.
    pub fn new(mut src: R) -> Result<Reader<R>, LogError> {
        let mut header = Vec::with_capacity(HEADER_LEN);
        (&mut src)
            .take(HEADER_LEN as u64)
            .read_to_end(&mut header)
            .map_err(|source| LogError::Io { path: PathBuf::new(), source })?;
        let schema = parse_header(&header)?;
        Ok(Reader { src, dec: Decoder::new(HEADER_LEN as u64, Parse::Events), eof: false, done: false, schema })
    }

    /// Continues a log from `offset`, the start of a record (a [`Record::offset`] or the
    /// end of one), on a source already positioned there whose header was checked before:
    /// replay seeks restart decoding mid-file without reading from the top.
    pub fn at(src: R, offset: u64, schema: (u32, u32)) -> Reader<R> {
        let offset = offset.max(HEADER_LEN as u64);
        Reader { src, dec: Decoder::new(offset, Parse::Events), eof: false, done: false, schema }
    }

    /// Gives the key tables of the records before `offset` (from
    /// [`key_tables_before`], or a previous reader's [`Reader::tables`]): a reader that
    /// starts mid-file decodes binary step records with them.
    pub fn with_keys(mut self, tables: &KeyTables) -> Self {
        self.dec.add_tables(tables);
        self
    }

    /// The key tables read (or given) so far.
    pub fn tables(&self) -> &KeyTables {
        self.dec.tables()
    }

    /// Framing only: intact records are counted towards [`Reader::good_end`] but not
    /// parsed, and only damaged spans are yielded.
    pub(crate) fn framing_only(mut self) -> Self {
        self.dec = Decoder::new(HEADER_LEN as u64, Parse::Framing);
        self
    }

    /// The header's (major, minor) schema version.
    pub fn schema(&self) -> (u32, u32) {
        self.schema
    }

    /// End offset of the last intact record read so far (16 when none).
    pub fn good_end(&self) -> u64 {
        self.dec.good_end()
    }

    /// File offset of the next byte to decode.
    pub fn offset(&self) -> u64 {
        self.dec.offset()
    }

    /// Reads everything that is left.
    pub fn into_contents(mut self) -> LogContents {
        let (schema_major, schema_minor) = self.schema;
        let mut c = LogContents { schema_major, schema_minor, records: Vec::new(), problems: Vec::new() };
        for item in &mut self {
            match item {
                Ok(r) => c.records.push(r),
                Err(p) => c.problems.push(p),
            }
        }
        c
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Record, Problem>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            let mode = if self.eof { Mode::Final } else { Mode::More };
            if let Some(item) = self.dec.next(mode) {
                return Some(item);
            }
            if self.eof {
                self.done = true;
                return None;
            }
            match self.dec.fill(&mut self.src, CHUNK) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) => {
                    self.done = true;
                    let offset = self.dec.end();
                    return Some(Err(Problem {
                        offset,
                        kind: ProblemKind::Io,
                        detail: format!("read failed, the rest of the file was not read: {e}"),
                    }));
                }
            }
        }
    }
}

/// Reads a whole log: every good record and every damaged span. Fails only when the file
/// cannot be opened or is not a run log this build can read.
pub fn read_all(path: &Path) -> Result<LogContents, LogError> {
    Ok(Reader::open(path)?.into_contents())
}

/// [`read_all`] over bytes in memory.
pub fn read_bytes(bytes: &[u8]) -> Result<LogContents, LogError> {
    Ok(Reader::new(bytes)?.into_contents())
}

/// Follows a live log. Each [`Tail::poll`] returns the complete records appended since
/// the previous poll, in order; a record the writer is still writing stays for the next
/// poll. Damaged spans are skipped and kept for [`Tail::take_problems`].
pub struct Tail {
    path: PathBuf,
    file: Option<File>,
    /// File offset to start from once the header has been checked.
    start: u64,
    dec: Decoder,
    schema: Option<(u32, u32)>,
    problems: Vec<Problem>,
}

impl Tail {
    /// Follows `path` from its first record. The file may not exist yet.
    pub fn new(path: &Path) -> Tail {
        Tail::from_offset(path, HEADER_LEN as u64)
    }

    /// Follows `path` from `offset`, which must be the start of a record (a
    /// [`Record::offset`], or the end of the last one read), e.g. after [`read_all`].
    pub fn from_offset(path: &Path, offset: u64) -> Tail {
        let start = offset.max(HEADER_LEN as u64);
        Tail {
            path: path.to_path_buf(),
            file: None,
            start,
            dec: Decoder::new(start, Parse::Events),
            schema: None,
            problems: Vec::new(),
        }
    }

    /// File offset of the next record to return.
    pub fn offset(&self) -> u64 {
        self.dec.offset()
    }

    /// The header's schema version, once it has been read.
    pub fn schema(&self) -> Option<(u32, u32)> {
        self.schema
    }

    /// Damaged spans skipped so far (drained). A span is reported once good records
    /// follow it; an unresolved one at the end is looked at again on each poll.
    pub fn take_problems(&mut self) -> Vec<Problem> {
        std::mem::take(&mut self.problems)
    }

    /// The complete records appended since the last poll (none while the file does not
    /// exist or its header is incomplete). Errors: I/O, or a header this build cannot
    /// read (`InvalidData`, with the [`LogError`] message).
    pub fn poll(&mut self) -> std::io::Result<Vec<Record>> {
        let mut out = Vec::new();
        self.poll_each(|r| out.push(r))?;
        Ok(out)
    }

    /// [`Tail::poll`] without collecting: hands each new record to `f` as it is decoded
    /// (catching up on a long log without holding it). Returns how many there were.
    pub fn poll_each(&mut self, mut f: impl FnMut(Record)) -> std::io::Result<usize> {
        let mut n = 0;
        if self.file.is_none() && !self.open()? {
            return Ok(0);
        }
        let Some(file) = self.file.as_mut() else { return Ok(0) };
        if file.metadata()?.len() <= self.dec.offset() {
            return Ok(0);
        }
        let mut at_end = false;
        loop {
            let mode = if at_end { Mode::Wait } else { Mode::More };
            match self.dec.next(mode) {
                Some(Ok(r)) => {
                    n += 1;
                    f(r);
                }
                Some(Err(p)) => self.problems.push(p),
                None if at_end => break,
                None => {
                    if self.dec.fill(file, CHUNK)? == 0 {
                        at_end = true;
                    }
                }
            }
        }
        // Read a half-written record (or an unresolved damaged span) again next time:
        // a resuming writer may truncate and rewrite it meanwhile.
        let at = self.dec.rewind_unsettled();
        file.seek(SeekFrom::Start(at))?;
        Ok(n)
    }

    /// Opens the file and checks its header. False while it is missing or too short.
    fn open(&mut self) -> std::io::Result<bool> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let mut header = Vec::with_capacity(HEADER_LEN);
        (&mut file).take(HEADER_LEN as u64).read_to_end(&mut header)?;
        match parse_header(&header) {
            Ok(v) => self.schema = Some(v),
            Err(LogError::TooShort { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        // Starting mid-file: the key tables recorded before the start.
        if self.start > HEADER_LEN as u64 && self.schema >= Some((1, 4)) {
            let tables = key_tables_before(&self.path, self.start)?;
            self.dec.add_tables(&tables);
        }
        file.seek(SeekFrom::Start(self.start))?;
        self.file = Some(file);
        Ok(true)
    }
}

/// The key tables recorded in a log's records before `offset` (a record start): what a
/// reader starting there needs to decode binary step records. Reads the log up to
/// `offset` once per log and process, then only what follows (the tables are cached by
/// file and by the log's first record, which names the run); a log older than 1.4 has
/// none and costs only its header.
pub fn key_tables_before(path: &Path, offset: u64) -> std::io::Result<KeyTables> {
    use std::collections::HashMap;
    use std::os::unix::fs::{FileExt, MetadataExt};
    use std::sync::Mutex;
    struct Scanned {
        first: [u8; 8],
        to: u64,
        tables: KeyTables,
    }
    static CACHE: Mutex<Option<HashMap<(u64, u64), Scanned>>> = Mutex::new(None);
    let mut file = File::open(path)?;
    let mut header = [0u8; HEADER_LEN];
    if file.read_exact_at(&mut header, 0).is_err() {
        return Ok(KeyTables::default());
    }
    if parse_header(&header).map_err(std::io::Error::from)? < (1, 4) {
        return Ok(KeyTables::default());
    }
    let meta = file.metadata()?;
    let key = (meta.dev(), meta.ino());
    let mut first = [0u8; 8];
    let _ = file.read_exact_at(&mut first, HEADER_LEN as u64);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    let (from, mut tables) = match cache.get(&key) {
        Some(s) if s.first == first && s.to <= offset => (s.to, s.tables.clone()),
        _ => (HEADER_LEN as u64, KeyTables::default()),
    };
    if offset > from {
        file.seek(SeekFrom::Start(from))?;
        let mut dec = Decoder::new(from, Parse::KeysOnly);
        let mut src = file.take(offset - from);
        loop {
            while dec.next(Mode::More).is_some() {}
            if dec.fill(&mut src, CHUNK)? == 0 {
                while dec.next(Mode::Final).is_some() {}
                break;
            }
        }
        tables.extend(dec.tables());
        cache.insert(key, Scanned { first, to: offset, tables: tables.clone() });
    }
    Ok(tables)
}

/// [`key_tables_before`] over a log image in memory: the tables in `log[..offset]`.
pub fn key_tables_in(log: &[u8], offset: u64) -> KeyTables {
    let end = (offset as usize).min(log.len());
    if end <= HEADER_LEN || parse_header(&log[..HEADER_LEN]).map_or(true, |v| v < (1, 4)) {
        return KeyTables::default();
    }
    let mut dec = Decoder::new(HEADER_LEN as u64, Parse::KeysOnly);
    let mut src = &log[HEADER_LEN..end];
    let _ = dec.fill(&mut src, end);
    while dec.next(Mode::Final).is_some() {}
    dec.tables().clone()
}
