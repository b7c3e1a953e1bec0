//! The replay index kept next to the log (`events.idx`), so that reopening a long run
//! has every seek at once instead of after a rebuild that reads the whole log.
//!
//! The file is a cache, never trusted over the log: it is used only when its checksum
//! holds and the log still has, byte for byte, what the index was built from where it
//! looks (the log's first and last 4 KiB up to the indexed end, and the record header at
//! every snapshot's offset); otherwise it is ignored and rebuilt. A log that grew since
//! (a live run, a resumed one) is read on from where the index ended.
//!
//! Layout (little-endian): magic, then the indexed end and the log fingerprints, the
//! builder's counters, marks and damage (JSON), the bucket chunks (each once: snapshots
//! share them), the snapshots, the fold at the indexed end, and a CRC-32C of it all.
//! Series are binary (f32 values, runs of steps); the rest of a view is JSON.

use super::codec::{Dec, Enc};
use super::series::{Bucket, Frozen};
use super::snapshot::{MarkKind, Snapshot};
use super::state::RunView;
use crate::runlog::Problem;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The index file's name, in the run directory.
pub const FILE: &str = "events.idx";
const MAGIC: &[u8; 8] = b"PTIDX\x001\n";
/// Bytes of the log hashed at its start and before the indexed end.
const FINGERPRINT: u64 = 4096;

/// Where the index of the log at `log` is kept.
pub fn path_for(log: &Path) -> PathBuf {
    log.with_file_name(FILE)
}

/// What an index file gives back: the builder's state at `log_end`.
pub struct Saved {
    pub log_end: u64,
    pub n: u64,
    pub max_step: u64,
    pub t: f64,
    pub every: u64,
    pub ended: bool,
    pub marks: Vec<(u64, MarkKind, u64)>,
    pub spans: Vec<Problem>,
    pub snapshots: Vec<Arc<Snapshot>>,
    /// The fold of everything up to `log_end`.
    pub view: RunView,
}

/// The log's fingerprint at an indexed end: CRC-32C of its first and last
/// [`FINGERPRINT`] bytes before `end`, and the 8-byte record header (length, CRC) at
/// each snapshot offset before `end`.
fn fingerprint(log: &Path, end: u64, offsets: &[u64]) -> std::io::Result<(u32, u32, Vec<u64>)> {
    let mut f = std::fs::File::open(log)?;
    if f.metadata()?.len() < end {
        return Err(std::io::Error::other("the log is shorter than the index"));
    }
    let mut read = |at: u64, n: u64| -> std::io::Result<Vec<u8>> {
        let mut b = vec![0; n as usize];
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(&mut b)?;
        Ok(b)
    };
    let head = crc32c::crc32c(&read(0, end.min(FINGERPRINT))?);
    let tail = crc32c::crc32c(&read(end.saturating_sub(FINGERPRINT), end.min(FINGERPRINT))?);
    let mut heads = Vec::with_capacity(offsets.len());
    for &o in offsets {
        heads.push(if o + 8 <= end { u64::from_le_bytes(read(o, 8)?.try_into().expect("8 bytes")) } else { 0 });
    }
    Ok((head, tail, heads))
}

fn encode_snapshot(e: &mut Enc, s: &Snapshot, chunk_id: &mut impl FnMut(&Arc<[Bucket]>) -> u32) {
    e.u64(s.events);
    e.u64(s.offset);
    e.u64(s.max_step);
    e.f64(s.t);
    e.u64(s.bytes as u64);
    e.bytes(&serde_json::to_vec(&s.view).expect("a view serialises"));
    e.u32(s.series.len() as u32);
    for (name, f) in &s.series {
        e.bytes(name.as_bytes());
        f.encode(e, &mut *chunk_id);
    }
}

fn decode_snapshot(d: &mut Dec, chunks: &[Arc<[Bucket]>]) -> Option<Snapshot> {
    let (events, offset, max_step, t, bytes) = (d.u64()?, d.u64()?, d.u64()?, d.f64()?, d.u64()? as usize);
    let view: RunView = serde_json::from_slice(d.bytes()?).ok()?;
    let n = d.len(8)?;
    let mut series = Vec::with_capacity(n);
    for _ in 0..n {
        let name = String::from_utf8(d.bytes()?.to_vec()).ok()?;
        series.push((name, Frozen::decode(d, chunks)?));
    }
    Some(Snapshot { events, offset, max_step, t, view, series, bytes })
}

/// Writes the index of `log` (built up to `s.log_end`; `last` is the fold there) to
/// [`path_for`]`(log)`, atomically (a temporary file renamed over it).
pub fn save(log: &Path, s: &Saved, last: &Snapshot) -> std::io::Result<()> {
    let offsets: Vec<u64> = s.snapshots.iter().map(|x| x.offset).collect();
    let (head, tail, heads) = fingerprint(log, s.log_end, &offsets)?;
    let mut e = Enc(MAGIC.to_vec());
    e.u64(s.log_end);
    e.u32(head);
    e.u32(tail);
    e.u64(s.n);
    e.u64(s.max_step);
    e.f64(s.t);
    e.u64(s.every);
    e.u8(s.ended as u8);
    let marks: Vec<(u64, u8, u64)> =
        s.marks.iter().map(|&(n, k, step)| (n, (k == MarkKind::Signal) as u8, step)).collect();
    e.bytes(&serde_json::to_vec(&(marks, &s.spans)).expect("marks serialise"));
    // Every distinct chunk once, numbered in order of first use.
    let mut ids: HashMap<*const Bucket, u32> = HashMap::new();
    let mut chunks: Vec<&Arc<[Bucket]>> = Vec::new();
    for snap in s.snapshots.iter().map(|x| &**x).chain([last]) {
        for (_, f) in &snap.series {
            for c in f.chunks() {
                ids.entry(c.as_ptr()).or_insert_with(|| {
                    chunks.push(c);
                    chunks.len() as u32 - 1
                });
            }
        }
    }
    e.u32(chunks.len() as u32);
    for c in &chunks {
        e.u32(c.len() as u32);
        c.iter().for_each(|b| b.encode(&mut e));
    }
    let mut chunk_id = |c: &Arc<[Bucket]>| ids[&c.as_ptr()];
    e.u32(s.snapshots.len() as u32);
    for (snap, h) in s.snapshots.iter().zip(&heads) {
        e.u64(*h);
        encode_snapshot(&mut e, snap, &mut chunk_id);
    }
    encode_snapshot(&mut e, last, &mut chunk_id);
    let crc = crc32c::crc32c(&e.0);
    e.u32(crc);
    let path = path_for(log);
    let tmp = path.with_extension("idx.tmp");
    std::io::Write::write_all(&mut phasetop_core::modes::create_file(&tmp)?, &e.0)?;
    std::fs::rename(&tmp, &path)
}

/// Reads the index of `log`, or says why it cannot be used (absent, damaged, or not the
/// index of what the log now holds).
pub fn load(log: &Path) -> Result<Saved, String> {
    let bytes = std::fs::read(path_for(log)).map_err(|e| format!("no index: {e}"))?;
    let Some(body) = bytes.strip_prefix(MAGIC) else { return Err("not an index file (or another version)".into()) };
    let (body, crc) = body.split_last_chunk::<4>().ok_or("truncated")?;
    if crc32c::crc32c(&bytes[..bytes.len() - 4]) != u32::from_le_bytes(*crc) {
        return Err("damaged (checksum mismatch)".into());
    }
    decode(body, log).ok_or_else(|| "damaged (bad structure)".to_string())?
}

fn decode(body: &[u8], log: &Path) -> Option<Result<Saved, String>> {
    let mut d = Dec(body);
    let (log_end, head, tail) = (d.u64()?, d.u32()?, d.u32()?);
    let (n, max_step, t, every, ended) = (d.u64()?, d.u64()?, d.f64()?, d.u64()?, d.u8()? != 0);
    let (marks, spans): (Vec<(u64, u8, u64)>, Vec<Problem>) = serde_json::from_slice(d.bytes()?).ok()?;
    let marks = marks.into_iter().map(|(n, k, s)| (n, if k == 1 { MarkKind::Signal } else { MarkKind::Phase }, s));
    let count = d.len(4)?;
    let mut chunks: Vec<Arc<[Bucket]>> = Vec::with_capacity(count);
    for _ in 0..count {
        let len = d.len(40)?;
        let c: Option<Vec<Bucket>> = (0..len).map(|_| Bucket::decode(&mut d)).collect();
        chunks.push(c?.into());
    }
    let count = d.len(8)?;
    let (mut snapshots, mut heads) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for _ in 0..count {
        heads.push(d.u64()?);
        snapshots.push(Arc::new(decode_snapshot(&mut d, &chunks)?));
    }
    let view = decode_snapshot(&mut d, &chunks)?.view();
    if !d.0.is_empty() || every == 0 {
        return None;
    }
    // The log must still hold what was indexed.
    let offsets: Vec<u64> = snapshots.iter().map(|x| x.offset).collect();
    match fingerprint(log, log_end, &offsets) {
        Ok(now) if now == (head, tail, heads) => {}
        Ok(_) => return Some(Err("stale: the log is not the one indexed".into())),
        Err(e) => return Some(Err(format!("stale: {e}"))),
    }
    Some(Ok(Saved { log_end, n, max_step, t, every, ended, marks: marks.collect(), spans, snapshots, view }))
}
