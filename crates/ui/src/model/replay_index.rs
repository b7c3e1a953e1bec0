//! The replay index: a background thread reads the run log once, folds it, and keeps
//! snapshots of the folded `RunView` every `every` events, so a seek anywhere restores
//! the nearest earlier snapshot and folds forward at most `every` events. The thread
//! only sends numbers and cloned views (no tensors, no held events), so the first frame
//! never waits for the whole log, and a live log is followed as it grows.
//!
//! Memory is bounded by a byte budget: when the snapshots outgrow it, every other one
//! is dropped and the spacing doubles (the same halving the series buckets use).

pub use super::snapshot::{MarkKind, Snapshot, approx_bytes};
use super::state::RunView;
use crate::event::Event;
use crate::runlog::{self, Problem, Reader, Record, Tail};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Snapshot spacing to start with, in events. Small logs seek by folding a few thousand
/// events at most; large ones double it as the budget requires.
const FIRST_EVERY: u64 = 4096;
/// Bytes all snapshots together may hold.
pub const DEFAULT_BUDGET: usize = 256 << 20;
/// A live attach's index budget: the dashboard stays small (docs/PERFORMANCE.md's attach
/// target is 60 MB); fewer snapshots only make a seek fold further.
pub const LIVE_BUDGET: usize = 8 << 20;
/// Events folded between publications to the shared state (keeps the lock cold).
const BATCH: u64 = 8192;

/// Where a replay reads its events from.
#[derive(Clone)]
pub enum Source {
    File(PathBuf),
    /// A log image in memory (tests, and runs given as events).
    Bytes(Arc<[u8]>),
}

pub type LogReader = Reader<Box<dyn Read + Send>>;

impl Source {
    /// A log image holding `events`, in the run log's own format.
    pub fn from_events(events: &[Event]) -> Source {
        let mut b = runlog::header_bytes().to_vec();
        for e in events {
            let json = serde_json::to_vec(e).expect("events serialise");
            b.extend_from_slice(&(json.len() as u32).to_le_bytes());
            b.extend_from_slice(&crc32c::crc32c(&json).to_le_bytes());
            b.extend_from_slice(&json);
        }
        Source::Bytes(b.into())
    }

    /// A reader positioned at `offset`, the start of a record.
    pub fn reader_at(&self, offset: u64) -> std::io::Result<LogReader> {
        let mut src: Box<dyn ReadSeek> = match self {
            Source::File(p) => Box::new(std::fs::File::open(p)?),
            Source::Bytes(b) => Box::new(std::io::Cursor::new(b.clone())),
        };
        let schema = Reader::new(&mut src)?.schema();
        src.seek(SeekFrom::Start(offset))?;
        // The key tables of compact step records before `offset` (schema 1.4; cached
        // per log, so a seek reads only what it has not read before).
        let tables = match self {
            Source::File(p) => runlog::key_tables_before(p, offset)?,
            Source::Bytes(b) => runlog::key_tables_in(b, offset),
        };
        Ok(Reader::at(Box::new(src) as Box<dyn Read + Send>, offset, schema).with_keys(&tables))
    }
}

trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// Damage found while indexing, for the notice in the header.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Damage {
    pub spans: Vec<Problem>,
    /// Unreadable bytes after the last good record of a log that is no longer written
    /// (the writer died mid-record): (offset, bytes).
    pub torn_tail: Option<(u64, u64)>,
}

impl Damage {
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.torn_tail.is_none()
    }

    /// A few words for the header (the footer gets [`Damage::notice`]).
    pub fn short(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(p) = self.spans.first() {
            parts.push(format!("{} damaged span(s) from @{}", self.spans.len(), p.offset));
        }
        if let Some((at, n)) = self.torn_tail {
            parts.push(format!("torn tail {n} B @{at}"));
        }
        (!parts.is_empty()).then(|| format!("⚠ {}", parts.join(", ")))
    }

    /// One line: what was skipped and where.
    pub fn notice(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(p) = self.spans.first() {
            let more = if self.spans.len() > 1 { format!(" (+{} more)", self.spans.len() - 1) } else { String::new() };
            parts.push(format!("skipped damaged span at offset {} ({}){more}", p.offset, p.kind));
        }
        if let Some((at, n)) = self.torn_tail {
            parts.push(format!("log ends in {n} unreadable bytes at offset {at} (writer died mid-record)"));
        }
        (!parts.is_empty()).then(|| format!("⚠ {}", parts.join("; ")))
    }
}

#[derive(Default)]
pub struct IndexState {
    pub snapshots: Vec<Arc<Snapshot>>,
    /// Good records indexed so far.
    pub events: u64,
    pub max_step: u64,
    /// (events up to and including the marked one, kind, its step), in log order.
    pub marks: Vec<(u64, MarkKind, u64)>,
    pub damage: Damage,
    /// The log is complete (not being written, or read to its end).
    pub done: bool,
    /// The log is still being written and is followed.
    pub following: bool,
    pub every: u64,
    /// What became of the index file next to a file log (`events.idx`).
    pub file: IndexFile,
    /// Whether the index was written next to the log once complete (`None`: not yet, or
    /// not needed: a short log, or one loaded whole from its index).
    pub saved: Option<Result<(), String>>,
    /// Done, and the index file written or found not needed: the indexer has stopped.
    pub settled: bool,
}

/// The index file a replay found next to its log.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum IndexFile {
    /// None there (or the log is not a file): the log is indexed from its start.
    #[default]
    Absent,
    /// Used: every seek it covers was available at once; the log is read on from its end.
    Loaded,
    /// Not used, and why (damaged, stale): the log is indexed from its start.
    Ignored(String),
}

/// Logs shorter than this are not worth an index file (indexing them takes moments).
pub const SAVE_MIN_EVENTS: u64 = 2 * FIRST_EVERY;

/// Handle to the indexing thread; dropping it stops the thread.
pub struct Index {
    state: Arc<Mutex<IndexState>>,
    stop: Arc<AtomicBool>,
    /// A deferred index's start ([`Index::deferred`]): taken by [`Index::ensure_started`].
    deferred: Option<(Source, Option<LiveCheck>, usize)>,
}

impl Drop for Index {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Says whether the log may still grow (its host is alive).
pub type LiveCheck = Box<dyn Fn() -> bool + Send>;

impl Index {
    /// Starts indexing `source` in the background. With `live`, a file log is followed
    /// while `live()` holds and no `run_ended` was read.
    pub fn start(source: Source, live: Option<LiveCheck>, budget: usize) -> Index {
        let mut index = Index::deferred(source, live, budget);
        index.ensure_started();
        index
    }

    /// An index that reads nothing until [`Index::ensure_started`]: a live attach only
    /// pays for one (a second fold of the log, and its snapshots) once the view first
    /// leaves the live end.
    pub fn deferred(source: Source, live: Option<LiveCheck>, budget: usize) -> Index {
        let state = Arc::new(Mutex::new(IndexState { every: FIRST_EVERY, ..Default::default() }));
        Index { state, stop: Arc::new(AtomicBool::new(false)), deferred: Some((source, live, budget)) }
    }

    /// Starts the indexing thread if it has not started yet.
    pub fn ensure_started(&mut self) {
        let Some((source, live, budget)) = self.deferred.take() else { return };
        let (st, sp) = (self.state.clone(), self.stop.clone());
        std::thread::Builder::new()
            .name("replay-index".into())
            .spawn(move || Builder::new(st, budget).run(source, live, &sp))
            .expect("spawn the replay indexer");
    }

    /// Whether the indexing thread has started.
    pub fn started(&self) -> bool {
        self.deferred.is_none()
    }

    pub fn state(&self) -> MutexGuard<'_, IndexState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks until the whole log is indexed (tests, benches, headless use).
    pub fn wait_done(&self) {
        while !self.state().done {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The latest snapshot at or before event number `events`.
    pub fn snapshot_before_event(&self, events: u64) -> Option<Arc<Snapshot>> {
        let s = self.state();
        let i = s.snapshots.partition_point(|x| x.events <= events);
        i.checked_sub(1).map(|i| s.snapshots[i].clone())
    }

    /// The latest snapshot from which a seek to `step` may fold forward.
    pub fn snapshot_before_step(&self, step: u64) -> Option<Arc<Snapshot>> {
        let s = self.state();
        let i = s.snapshots.partition_point(|x| x.max_step <= step);
        i.checked_sub(1).map(|i| s.snapshots[i].clone())
    }
}

/// The indexing thread's own fold.
struct Builder {
    shared: Arc<Mutex<IndexState>>,
    budget: usize,
    view: RunView,
    n: u64,
    max_step: u64,
    t: f64,
    every: u64,
    snapshots: Vec<Arc<Snapshot>>,
    marks: Vec<(u64, MarkKind, u64)>,
    spans: Vec<Problem>,
    ended: bool,
    /// Events the index file held when it was loaded.
    loaded_n: Option<u64>,
}

impl Builder {
    fn new(shared: Arc<Mutex<IndexState>>, budget: usize) -> Builder {
        Builder {
            shared,
            budget,
            view: RunView::default(),
            n: 0,
            max_step: 0,
            t: 0.0,
            every: FIRST_EVERY,
            snapshots: Vec::new(),
            marks: Vec::new(),
            spans: Vec::new(),
            ended: false,
            loaded_n: None,
        }
    }

    fn run(mut self, source: Source, live: Option<LiveCheck>, stop: &AtomicBool) {
        match source {
            Source::Bytes(b) => {
                if let Ok(r) = Reader::new(std::io::Cursor::new(b)) {
                    for item in r {
                        match item {
                            Ok(rec) => self.add(rec),
                            Err(p) => self.spans.push(p),
                        }
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                    }
                }
                self.publish(true, false, None);
                self.shared.lock().unwrap_or_else(|e| e.into_inner()).settled = true;
            }
            Source::File(path) => self.follow(&path, live, stop),
        }
    }

    /// Reads the file with a `Tail` (which leaves a half-written record for later), and
    /// while the run is live waits for the file to change and reads on.
    fn follow(&mut self, path: &std::path::Path, live: Option<LiveCheck>, stop: &AtomicBool) {
        let start = self.load(path);
        let mut tail = Tail::from_offset(path, start);
        let mut watch = super::follow::Watch::new(path);
        loop {
            let res = tail.poll_each(|rec| {
                self.add(rec);
            });
            self.spans.extend(tail.take_problems());
            let still_live = res.is_ok() && !self.ended && live.as_ref().is_some_and(|f| f());
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if !still_live {
                // Nothing more will come: whatever lies past the last good record is damage.
                let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                let torn = (len > tail.offset() && tail.offset() > 0).then(|| (tail.offset(), len - tail.offset()));
                self.publish(true, false, torn);
                self.save(path, tail.offset());
                return;
            }
            self.publish(false, true, None);
            watch.wait(Duration::from_millis(500), stop);
        }
    }

    /// Takes the state from the index file next to the log when it is sound and still
    /// the log's; returns the log offset to read on from.
    fn load(&mut self, log: &std::path::Path) -> u64 {
        use super::index_file;
        let file = match index_file::load(log) {
            Ok(saved) => {
                self.view = saved.view;
                (self.n, self.max_step, self.t, self.every) = (saved.n, saved.max_step, saved.t, saved.every);
                (self.snapshots, self.marks, self.spans) = (saved.snapshots, saved.marks, saved.spans);
                self.ended = saved.ended;
                self.loaded_n = Some(saved.n);
                self.shared.lock().unwrap_or_else(|e| e.into_inner()).file = IndexFile::Loaded;
                self.publish(false, false, None);
                return saved.log_end;
            }
            Err(why) if !index_file::path_for(log).exists() => {
                let _ = why;
                IndexFile::Absent
            }
            Err(why) => IndexFile::Ignored(why),
        };
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).file = file;
        0
    }

    /// Writes the index next to the log once it is complete (a log long enough to be
    /// worth it, and more of it than a loaded index held). Failing to (a read-only run
    /// directory) only costs the next replay a rebuild.
    fn save(&mut self, log: &std::path::Path, end: u64) {
        if self.n < SAVE_MIN_EVENTS || self.loaded_n == Some(self.n) {
            self.shared.lock().unwrap_or_else(|e| e.into_inner()).settled = true;
            return;
        }
        let last =
            Snapshot::new(self.n, end, self.max_step, self.t, &mut self.view, self.snapshots.last().map(|s| &**s));
        let saved = super::index_file::Saved {
            log_end: end,
            n: self.n,
            max_step: self.max_step,
            t: self.t,
            every: self.every,
            ended: self.ended,
            marks: std::mem::take(&mut self.marks),
            spans: std::mem::take(&mut self.spans),
            snapshots: std::mem::take(&mut self.snapshots),
            view: RunView::default(),
        };
        let r = super::index_file::save(log, &saved, &last).map_err(|e| e.to_string());
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        (shared.saved, shared.settled) = (Some(r), true);
    }

    fn add(&mut self, rec: Record) {
        if self.n.is_multiple_of(self.every) {
            self.snapshot(rec.offset);
        }
        let e = &rec.event;
        match e {
            Event::Step { t, .. } => self.t = *t,
            Event::RunStarted { started_at, .. } if self.t == 0.0 => self.t = *started_at,
            Event::RunEnded { .. } => self.ended = true,
            Event::RunStarted { .. } => self.ended = false,
            _ => {}
        }
        self.view.apply(e);
        self.n += 1;
        self.max_step = self.max_step.max(e.step().unwrap_or(0));
        match e {
            Event::PhaseChanged { step, .. } => self.marks.push((self.n, MarkKind::Phase, *step)),
            Event::Signal { step, .. } => self.marks.push((self.n, MarkKind::Signal, *step)),
            _ => {}
        }
        if self.n.is_multiple_of(BATCH) {
            self.publish(false, false, None);
        }
    }

    fn snapshot(&mut self, offset: u64) {
        let prev = self.snapshots.last().map(|s| &**s);
        let s = Snapshot::new(self.n, offset, self.max_step, self.t, &mut self.view, prev);
        self.snapshots.push(Arc::new(s));
        // Chunks shared with a dropped snapshot stay with the next one but are no longer
        // counted: the total is approximate, within one set of buckets per series.
        while self.snapshots.len() > 2 && self.snapshots.iter().map(|s| s.bytes).sum::<usize>() > self.budget {
            self.every *= 2;
            let every = self.every;
            self.snapshots.retain(|s| s.events.is_multiple_of(every));
        }
    }

    fn publish(&mut self, done: bool, following: bool, torn: Option<(u64, u64)>) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        s.events = self.n;
        s.max_step = self.max_step;
        s.every = self.every;
        // Snapshots are shared by `Arc`: republishing costs pointers, not views.
        s.snapshots.clone_from(&self.snapshots);
        let known = s.marks.len().min(self.marks.len());
        s.marks.extend_from_slice(&self.marks[known..]);
        s.damage.spans.clone_from(&self.spans);
        s.damage.torn_tail = torn;
        s.done = done;
        s.following = following;
    }
}
