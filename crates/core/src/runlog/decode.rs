//! The record decoder shared by [`super::Reader`] and [`super::Tail`]: a state machine
//! over a window of the file's bytes that yields records and damaged spans, asks for more
//! bytes when it cannot decide, and never panics.

use super::compact::{self, KeyTables, STEP_TAG, Undecodable};
use super::{MAX_PAYLOAD, Problem, ProblemKind, RECORD_HEADER_LEN, Record};
use crate::event::Event;
use std::collections::VecDeque;
use std::io::Read;

/// How to treat the end of the bytes in hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// More bytes can be read: ask for them.
    More,
    /// This is the end of the file: an incomplete record is a torn tail.
    Final,
    /// The end for now (a live log): an incomplete record may still be written.
    Wait,
}

enum Scan {
    /// A frame whose length and CRC check out; the payload length.
    Good(usize),
    /// Not enough bytes to decide.
    Incomplete,
    Bad(ProblemKind),
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Checks the frame at the start of `b`. In `resync` mode a candidate must also look
/// like an event (`{` ... `}`, or a binary step record's tag and a length it can have),
/// a cheap filter that keeps garbage from costing CRCs.
fn scan(b: &[u8], resync: bool) -> Scan {
    if b.len() < RECORD_HEADER_LEN {
        return Scan::Incomplete;
    }
    let len = le32(b) as usize;
    if !(2..=MAX_PAYLOAD).contains(&len) {
        return Scan::Bad(ProblemKind::BadLength);
    }
    let binary = b.get(RECORD_HEADER_LEN) == Some(&STEP_TAG);
    if resync
        && b.len() > RECORD_HEADER_LEN
        && b[RECORD_HEADER_LEN] != b'{'
        && !(binary && len <= compact::MAX_STEP_RECORD)
    {
        return Scan::Bad(ProblemKind::BadLength);
    }
    let end = RECORD_HEADER_LEN + len;
    if b.len() < end {
        return Scan::Incomplete;
    }
    if resync && !binary && b[end - 1] != b'}' {
        return Scan::Bad(ProblemKind::BadLength);
    }
    if crc32c::crc32c(&b[RECORD_HEADER_LEN..end]) != le32(&b[4..]) {
        return Scan::Bad(ProblemKind::CrcMismatch);
    }
    Scan::Good(len)
}

/// Whether a complete, valid-looking frame starts anywhere in `b`.
fn any_good(b: &[u8]) -> bool {
    (0..b.len()).any(|i| matches!(scan(&b[i..], true), Scan::Good(_)))
}

/// A damaged span being skipped.
struct Pending {
    offset: u64,
    kind: ProblemKind,
    detail: String,
    /// For a provisional torn tail: the detail should it turn out to be a bad length.
    overrun: Option<String>,
}

/// What the decoder does with an intact payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Parse {
    /// Decode it into an event.
    Events,
    /// Only take key tables from `keys` events (finding the tables before an offset).
    KeysOnly,
    /// Nothing: only the framing matters.
    Framing,
}

pub(crate) struct Decoder {
    /// A window of the file: `buf[0]` is at file offset `base`.
    buf: Vec<u8>,
    base: u64,
    /// Next undecoded byte in `buf`.
    pos: usize,
    pending: Option<Pending>,
    ready: VecDeque<Result<Record, Problem>>,
    /// What to make of intact payloads.
    parse: Parse,
    /// Key tables of the binary step records (from `keys` events, or given).
    tables: KeyTables,
    /// End offset of the last intact frame (the header's end when none).
    good_end: u64,
}

impl Decoder {
    /// A decoder whose first byte will be at file offset `base`.
    pub fn new(base: u64, parse: Parse) -> Decoder {
        Decoder {
            buf: Vec::new(),
            base,
            pos: 0,
            pending: None,
            ready: VecDeque::new(),
            parse,
            tables: KeyTables::default(),
            good_end: base,
        }
    }

    /// Key tables known so far.
    pub fn tables(&self) -> &KeyTables {
        &self.tables
    }

    pub fn add_tables(&mut self, t: &KeyTables) {
        self.tables.extend(t);
    }

    /// File offset of the next undecoded byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// File offset just past the bytes in hand.
    pub fn end(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    pub fn good_end(&self) -> u64 {
        self.good_end
    }

    /// Forgets the undecoded bytes and any damaged span still open, so that decoding
    /// starts again at the first byte not accounted for: the start of the open span, or
    /// the next undecoded byte. Returns that offset. (A live log's unfinished tail may be
    /// truncated and rewritten by a resuming writer between two looks at it.)
    pub fn rewind_unsettled(&mut self) -> u64 {
        let at = match self.pending.take() {
            Some(p) => p.offset,
            None => self.offset(),
        };
        self.buf.clear();
        self.base = at;
        self.pos = 0;
        at
    }

    /// Reads up to `chunk` more bytes from `r` after dropping the decoded ones.
    /// Returns how many were read (0 at the end of the file).
    pub fn fill(&mut self, r: &mut impl Read, chunk: usize) -> std::io::Result<usize> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
        let before = self.buf.len();
        r.take(chunk as u64).read_to_end(&mut self.buf)?;
        Ok(self.buf.len() - before)
    }

    /// The next record or problem, or `None` when it needs more bytes (in `Final` mode:
    /// when everything has been decoded).
    pub fn next(&mut self, mode: Mode) -> Option<Result<Record, Problem>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            if self.pending.is_some() {
                if !self.resync(mode) {
                    return None;
                }
                continue;
            }
            let offset = self.offset();
            let rest = &self.buf[self.pos..];
            match scan(rest, false) {
                Scan::Good(len) => {
                    let total = RECORD_HEADER_LEN + len;
                    self.pos += total;
                    self.good_end = offset + total as u64;
                    let payload = &self.buf[self.pos - len..self.pos];
                    match self.parse {
                        Parse::Events => {
                            if let Some(item) = parse_payload(offset, payload, &mut self.tables) {
                                return Some(item);
                            }
                        }
                        Parse::KeysOnly => {
                            if payload.first() == Some(&b'{')
                                && payload.windows(6).any(|w| w == b"\"keys\"")
                                && let Some(t) = compact::parse_keys(payload)
                            {
                                self.tables.insert(t);
                            }
                        }
                        Parse::Framing => {}
                    }
                }
                Scan::Bad(kind) => {
                    let detail = describe(kind, rest);
                    self.pending = Some(Pending { offset, kind, detail, overrun: None });
                    self.pos += 1;
                }
                Scan::Incomplete => match mode {
                    Mode::More => return None,
                    Mode::Wait => {
                        // A half-written record, unless good records follow it: then its
                        // length word is damaged and waiting would stall forever.
                        if rest.len() > 1 && any_good(&rest[1..]) {
                            let detail = overrun(rest);
                            self.pending =
                                Some(Pending { offset, kind: ProblemKind::BadLength, detail, overrun: None });
                            self.pos += 1;
                        } else {
                            return None;
                        }
                    }
                    Mode::Final => {
                        if rest.is_empty() {
                            return None;
                        }
                        // Provisionally torn; `resync` makes it a bad length if good
                        // records follow.
                        let detail = describe(ProblemKind::TornTail, rest);
                        let overrun = Some(overrun(rest));
                        self.pending = Some(Pending { offset, kind: ProblemKind::TornTail, detail, overrun });
                        self.pos += 1;
                    }
                },
            }
        }
    }

    /// Scans forward for the next good frame; queues the pending problem when the span
    /// ends (at a good frame, or at the end of the file in `Final` mode). Returns false
    /// when it needs more bytes.
    fn resync(&mut self, mode: Mode) -> bool {
        while self.pos < self.buf.len() {
            match scan(&self.buf[self.pos..], true) {
                Scan::Good(_) => {
                    let end = self.offset();
                    self.close_pending(end, false);
                    return true;
                }
                Scan::Bad(_) => self.pos += 1,
                Scan::Incomplete => match mode {
                    Mode::More | Mode::Wait => return false,
                    Mode::Final => self.pos += 1,
                },
            }
        }
        if mode == Mode::Final {
            let end = self.end();
            self.close_pending(end, true);
            return true;
        }
        false
    }

    fn close_pending(&mut self, end: u64, at_eof: bool) {
        let Some(mut p) = self.pending.take() else { return };
        let skipped = end - p.offset;
        if !at_eof && p.kind == ProblemKind::TornTail {
            // Good records follow, so it was not the tail: the length word is wrong.
            p.kind = ProblemKind::BadLength;
            p.detail = p.overrun.take().unwrap_or_default();
        }
        let tail = if at_eof {
            format!("skipped {skipped} bytes to the end of the file")
        } else {
            format!("skipped {skipped} bytes, resynchronised at offset {end}")
        };
        self.ready.push_back(Err(Problem { offset: p.offset, kind: p.kind, detail: format!("{}; {tail}", p.detail) }));
    }
}

/// A plausible length word whose record would run over the intact records after it.
fn overrun(b: &[u8]) -> String {
    match b.get(..4) {
        Some(w) => format!("payload length {} runs over the records that follow", le32(w)),
        None => "length word cut short".to_string(),
    }
}

fn describe(kind: ProblemKind, b: &[u8]) -> String {
    if b.len() < RECORD_HEADER_LEN {
        return format!("incomplete final record: {} of {RECORD_HEADER_LEN} header bytes", b.len());
    }
    let len = le32(b) as usize;
    let have = b.len() - RECORD_HEADER_LEN;
    match kind {
        ProblemKind::BadLength if !(2..=MAX_PAYLOAD).contains(&len) => {
            format!("invalid payload length {len} (allowed 2..={MAX_PAYLOAD})")
        }
        ProblemKind::BadLength | ProblemKind::TornTail => {
            format!("incomplete final record: length {len}, {have} payload bytes present")
        }
        ProblemKind::CrcMismatch => {
            let want = le32(&b[4..]);
            let got = crc32c::crc32c(&b[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len]);
            format!("CRC32C mismatch: stored {want:#010x}, computed {got:#010x} over {len} bytes")
        }
        _ => String::new(),
    }
}

/// Parses an intact payload into a record, or says why it is not an event; `None` for a
/// `keys` event, whose table goes into `tables` (it is the format's, not an event).
pub(crate) fn parse_payload(offset: u64, payload: &[u8], tables: &mut KeyTables) -> Option<Result<Record, Problem>> {
    if payload.first() == Some(&STEP_TAG) {
        return Some(match compact::decode_step(payload, tables) {
            Ok(event) => Ok(Record { offset, event }),
            Err(Undecodable::MissingTable(id)) => Err(Problem {
                offset,
                kind: ProblemKind::MissingKeys,
                detail: format!(
                    "step record of key table {id:#010x}, whose keys event was not read (damaged, or before where reading started)"
                ),
            }),
            Err(Undecodable::Malformed(why)) => Err(Problem {
                offset,
                kind: ProblemKind::InvalidJson,
                detail: format!("binary step record: {why} ({} bytes)", payload.len()),
            }),
        });
    }
    if compact::looks_like_keys(payload)
        && let Some(t) = compact::parse_keys(payload)
    {
        tables.insert(t);
        return None;
    }
    if let Some(event) = super::fast::decode(payload) {
        return Some(Ok(Record { offset, event }));
    }
    Some(match serde_json::from_slice::<Event>(payload) {
        Ok(event) => Ok(Record { offset, event }),
        Err(e) => {
            let msg = e.to_string();
            let kind = if msg.starts_with("unknown variant") && is_json_object(payload) {
                ProblemKind::UnknownEvent
            } else {
                ProblemKind::InvalidJson
            };
            let detail = match kind {
                ProblemKind::UnknownEvent => {
                    let ty = msg.split('`').nth(1).unwrap_or("?");
                    format!("unknown event type \"{ty}\" ({} bytes)", payload.len())
                }
                _ => format!("{msg} ({} bytes)", payload.len()),
            };
            // A `keys` event in another spelling (fields in another order).
            if kind == ProblemKind::UnknownEvent
                && let Some(t) = compact::parse_keys(payload)
            {
                tables.insert(t);
                return None;
            }
            Err(Problem { offset, kind, detail })
        }
    })
}

fn is_json_object(payload: &[u8]) -> bool {
    matches!(serde_json::from_slice::<serde_json::Value>(payload), Ok(serde_json::Value::Object(_)))
}
