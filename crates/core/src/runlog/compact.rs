//! Compact step records (schema 1.4): a `step` event as a binary payload that names its
//! phase and metrics by index into a per-run key table, itself recorded as a JSON
//! `keys` event. docs/RUNLOG.md has the layout and the rules; in short:
//!
//! ```text
//! payload : 0x01 | u32 LE table id | step (LEB128) | t (f64 LE) | phase index (LEB128)
//!         | presence bitmap, ceil(metrics/8) bytes | f64 LE per present metric, in table order
//! keys    : {"type":"keys","id":N,"phases":[...],"metrics":[...]}   (a whole table)
//! ```
//!
//! Values are f64, so a record holds exactly what the JSON would (f32 would round
//! `lr = 1e-3`); non-finite values are stored as NaN, which is what JSON `null` reads as.
//! Step and time are absolute, so a record decodes alone once its table is known: a reader
//! that resynchronises after damage needs nothing from the records it skipped, only the
//! table's `keys` event, which the writer records before the table's first use, again on
//! every reopen (resume), and again after each [`REKEY_EVERY`] bytes of log.

use crate::event::{Event, Metrics};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// First payload byte of a binary step record (a JSON payload starts with `{`).
pub const STEP_TAG: u8 = 0x01;
/// A binary step record is at most this long (a cheap filter while resynchronising).
pub const MAX_STEP_RECORD: usize = 64 << 10;
/// Names a table may hold; a step with more falls back to JSON.
const MAX_NAMES: usize = 4096;
/// Log bytes after which the writer records its table again, so damage that takes a
/// `keys` event loses at most this much of the steps after it.
pub const REKEY_EVERY: u64 = 1 << 20;

/// One key table: what a binary record's indices mean.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyTable {
    pub id: u32,
    pub phases: Vec<String>,
    pub metrics: Vec<String>,
}

/// The key tables a reader has seen, by id, and the last one read.
#[derive(Clone, Debug, Default)]
pub struct KeyTables(HashMap<u32, Arc<KeyTable>>, Option<u32>);

impl KeyTables {
    pub fn insert(&mut self, t: KeyTable) {
        self.1 = Some(t.id);
        self.0.insert(t.id, Arc::new(t));
    }
    /// The table of the last `keys` event read (the one a writer uses from there on).
    pub fn last(&self) -> Option<&KeyTable> {
        self.1.and_then(|id| self.get(id))
    }
    pub fn get(&self, id: u32) -> Option<&KeyTable> {
        self.0.get(&id).map(|t| &**t)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn extend(&mut self, other: &KeyTables) {
        self.0.extend(other.0.iter().map(|(k, v)| (*k, v.clone())));
        if other.1.is_some() {
            self.1 = other.1;
        }
    }
}

#[derive(Serialize, Deserialize)]
struct KeysEvent<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    id: u32,
    phases: Vec<String>,
    metrics: Vec<String>,
}

/// The JSON of a table's `keys` event.
pub(crate) fn keys_json(t: &KeyTable) -> Vec<u8> {
    let ev = KeysEvent { ty: "keys", id: t.id, phases: t.phases.clone(), metrics: t.metrics.clone() };
    serde_json::to_vec(&ev).expect("a key table serialises")
}

/// A `keys` event's table, when the payload is one (any JSON spelling).
pub(crate) fn parse_keys(payload: &[u8]) -> Option<KeyTable> {
    let ev: KeysEvent = serde_json::from_slice(payload).ok()?;
    (ev.ty == "keys").then_some(KeyTable { id: ev.id, phases: ev.phases, metrics: ev.metrics })
}

/// Whether a JSON payload is (probably) a `keys` event: our writer's spelling, checked
/// before anything else so that steps never pay for it.
pub(crate) fn looks_like_keys(payload: &[u8]) -> bool {
    payload.starts_with(br#"{"type":"keys""#)
}

/// Why a binary payload is not a step record.
pub(crate) enum Undecodable {
    /// Its table's `keys` event was not read (damaged, or before where reading started).
    MissingTable(u32),
    Malformed(&'static str),
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct In<'a>(&'a [u8]);

impl In<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn f64(&mut self) -> Option<f64> {
        self.take(8).map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }
    fn varint(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.take(1)?.first()?;
            v |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                // Canonical only: no redundant trailing zero groups, no overflow bits.
                if (shift > 0 && b == 0) || (shift == 63 && b > 1) {
                    return None;
                }
                return Some(v);
            }
        }
        None
    }
}

/// Decodes a binary step record with the tables known so far.
pub(crate) fn decode_step(payload: &[u8], tables: &KeyTables) -> Result<Event, Undecodable> {
    let mut r = In(payload);
    let bad = Undecodable::Malformed;
    if r.take(1) != Some(&[STEP_TAG][..]) {
        return Err(bad("not a binary step record"));
    }
    let id = r.u32().ok_or(bad("cut short in its table id"))?;
    let table = tables.get(id).ok_or(Undecodable::MissingTable(id))?;
    let step = r.varint().ok_or(bad("bad step"))?;
    let t = r.f64().ok_or(bad("cut short in its time"))?;
    let phase = r.varint().ok_or(bad("bad phase index"))?;
    let phase = table.phases.get(phase as usize).ok_or(bad("phase index past its table"))?.clone();
    let n = table.metrics.len();
    let bitmap = r.take(n.div_ceil(8)).ok_or(bad("cut short in its bitmap"))?.to_vec();
    let mut metrics = Metrics::new();
    for (i, name) in table.metrics.iter().enumerate() {
        if bitmap[i / 8] & (1 << (i % 8)) != 0 {
            let v = r.f64().ok_or(bad("cut short in its values"))?;
            metrics.insert(name.clone(), if v.is_finite() { v } else { f64::NAN });
        }
    }
    if n % 8 != 0 && bitmap.last().is_some_and(|b| b >> (n % 8) != 0) {
        return Err(bad("bitmap names metrics past its table"));
    }
    if !r.0.is_empty() {
        return Err(bad("bytes after its values"));
    }
    Ok(Event::Step { step, phase, t, metrics })
}

/// The writer's side: the current table and where its names are.
pub(crate) struct StepKeys {
    table: KeyTable,
    phase_ix: HashMap<String, u64>,
    metric_ix: HashMap<String, usize>,
    /// Log bytes written since the table's `keys` event (None: not recorded yet in this
    /// writer, so it must be before the next binary record).
    since_recorded: Option<u64>,
}

impl StepKeys {
    pub fn new() -> StepKeys {
        StepKeys {
            table: KeyTable { id: fresh_id(), phases: Vec::new(), metrics: Vec::new() },
            phase_ix: HashMap::new(),
            metric_ix: HashMap::new(),
            since_recorded: None,
        }
    }

    /// The table records use now.
    pub fn table(&self) -> &KeyTable {
        &self.table
    }

    /// Makes room for a step's names: a table that lacks one becomes a new table (new
    /// id: tables are never changed once recorded). False when it would grow too large.
    pub fn admit(&mut self, phase: &str, metrics: &Metrics) -> bool {
        let new_phase = !self.phase_ix.contains_key(phase);
        let new_metrics = metrics.keys().filter(|k| !self.metric_ix.contains_key(*k)).count();
        if !new_phase && new_metrics == 0 {
            return true;
        }
        if self.table.metrics.len() + new_metrics > MAX_NAMES || self.table.phases.len() >= MAX_NAMES {
            return false;
        }
        if new_phase {
            self.phase_ix.insert(phase.to_string(), self.table.phases.len() as u64);
            self.table.phases.push(phase.to_string());
        }
        for k in metrics.keys() {
            if !self.metric_ix.contains_key(k) {
                self.metric_ix.insert(k.clone(), self.table.metrics.len());
                self.table.metrics.push(k.clone());
            }
        }
        self.table.id = fresh_id();
        self.since_recorded = None;
        true
    }

    /// Whether the table's `keys` event must be recorded before the next record.
    pub fn due(&self) -> bool {
        self.since_recorded.is_none_or(|b| b >= REKEY_EVERY)
    }

    pub fn recorded(&mut self) {
        self.since_recorded = Some(0);
    }

    pub fn wrote(&mut self, bytes: u64) {
        if let Some(b) = &mut self.since_recorded {
            *b += bytes;
        }
    }

    /// Appends the binary record of a step whose names [`StepKeys::admit`] took.
    pub fn encode(&self, out: &mut Vec<u8>, step: u64, phase: &str, t: f64, metrics: &Metrics) {
        out.push(STEP_TAG);
        out.extend_from_slice(&self.table.id.to_le_bytes());
        varint(out, step);
        out.extend_from_slice(&t.to_le_bytes());
        varint(out, self.phase_ix.get(phase).copied().unwrap_or(0));
        let n = self.table.metrics.len();
        let bitmap_at = out.len();
        out.resize(bitmap_at + n.div_ceil(8), 0);
        let mut present: Vec<(usize, f64)> =
            metrics.iter().filter_map(|(k, v)| self.metric_ix.get(k).map(|&i| (i, *v))).collect();
        present.sort_unstable_by_key(|p| p.0);
        for (i, v) in present {
            out[bitmap_at + i / 8] |= 1 << (i % 8);
            let v = if v.is_finite() { v } else { f64::NAN };
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// A table id unlikely to repeat within a log: ids only tell tables apart, so a reader
/// that missed a table's `keys` event never decodes with another table's names.
fn fresh_id() -> u32 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut seed = Vec::with_capacity(32);
    seed.extend_from_slice(&nanos.to_le_bytes());
    seed.extend_from_slice(&std::process::id().to_le_bytes());
    seed.extend_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    crc32c::crc32c(&seed)
}
