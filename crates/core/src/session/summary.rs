//! The per-run summary, `RUN_DIR/summary.json`: what `phasetop ls` shows of a run
//! (status, phase, step, config, where it branched from, tags) and its last metrics,
//! with the log length it reflects. Both hosts keep it through [`RunLog`], the one
//! writer of a run's log: rewritten (temp file + rename, the run's file mode) at most
//! once a second while events come, at every phase change, start and end, and when the
//! log is synced. `ls` reads it instead of folding the whole log, folds only the log
//! bytes after `log_len` when the log has grown, and rebuilds it from the log when it is
//! missing, unreadable or does not fit the log (old runs, a log truncated by a resume).
//!
//! The fold here ([`RunSummary::apply`]) gives the same figures as
//! [`crate::inspect::Summary`] for a log without resumes; a resume (whose start
//! supersedes what was logged after its step) makes it rebuild from the whole log with
//! `Summary::load`, the one place that knows supersession.

use crate::event::Event;
use crate::inspect::Summary;
use crate::rundir::{HostState, RunDir};
use crate::runlog::{self, Dropped, KeyTable, Writer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The summary's file name in a run directory.
pub const FILE: &str = "summary.json";
/// Points kept in [`RunSummary::loss_trend`].
pub const TREND_POINTS: usize = 48;
/// Its format version (a reader rebuilds a summary of another version).
pub const VERSION: u32 = 1;
/// How often a summary is rewritten while events come (phase changes, starts and ends
/// are written at once).
pub const EVERY: Duration = Duration::from_secs(1);

/// Where a branch came from, as the log names it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Parent {
    pub run_id: String,
    pub branch_step: u64,
}

/// What `summary.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub version: u32,
    /// The log's length when this was written: the bytes it reflects.
    pub log_len: u64,
    pub run_id: String,
    pub config_name: String,
    /// completed, stopped, failed, diverged; `unknown` while the log has no end (`ls`
    /// asks the host whether it is running).
    pub status: String,
    /// The phase last entered (empty before the first).
    pub phase: String,
    /// The latest step (as `inspect` reports it).
    pub step: u64,
    /// The last value of each metric (null where it was not finite).
    pub metrics: BTreeMap<String, Option<f64>>,
    pub parent: Option<Parent>,
    pub tags: Vec<String>,
    /// Unix seconds when written.
    pub updated_at: f64,
    /// The training loss across the run for a sparkline (`train_loss`, else `loss`): at
    /// most [`TREND_POINTS`] values, evenly spaced in steps recorded (every `trend_stride`-th
    /// value; when full, every other one is dropped and the stride doubles).
    #[serde(default)]
    pub loss_trend: Vec<f64>,
    #[serde(default = "one")]
    trend_stride: u64,
    #[serde(default)]
    trend_seen: u64,
    /// The key table compact step records use at `log_len` (schema 1.4), so the log's
    /// bytes after it can be folded without reading what came before.
    pub keys: Option<KeyTable>,
    /// The fold's step bookkeeping: the latest step since the last start, and before.
    seg_last: Option<u64>,
    prev_last: Option<u64>,
}

impl Default for RunSummary {
    fn default() -> Self {
        RunSummary {
            version: VERSION,
            log_len: runlog::HEADER_LEN as u64,
            run_id: String::new(),
            config_name: String::new(),
            status: "unknown".into(),
            phase: String::new(),
            step: 0,
            metrics: BTreeMap::new(),
            parent: None,
            tags: Vec::new(),
            updated_at: 0.0,
            loss_trend: Vec::new(),
            trend_stride: 1,
            trend_seen: 0,
            keys: None,
            seg_last: None,
            prev_last: None,
        }
    }
}

impl RunSummary {
    /// The summary of a folded log of `log_len` bytes.
    pub fn from_summary(s: &Summary, log_len: u64) -> RunSummary {
        RunSummary {
            log_len,
            run_id: s.run_id.clone(),
            config_name: s.config_name.clone(),
            status: s.status.clone(),
            phase: s.phases.last().map(|p| p.name.clone()).unwrap_or_default(),
            step: s.last_step,
            metrics: s.final_metrics.iter().map(|(k, v)| (k.clone(), v.is_finite().then_some(*v))).collect(),
            parent: s.parent.as_ref().map(|p| Parent { run_id: p.run_id.clone(), branch_step: p.branch_step }),
            tags: s.tags.clone(),
            seg_last: Some(s.last_step),
            ..RunSummary::default()
        }
    }

    /// Rebuilds the summary of the log at `log` from all of it.
    pub fn rebuild(log: &Path) -> Result<RunSummary, runlog::LogError> {
        let len = std::fs::metadata(log).map_err(|source| runlog::LogError::Io { path: log.into(), source })?.len();
        let s = Summary::load(log)?;
        let mut r = RunSummary::from_summary(&s, len);
        // The loss trend since the run's last start (a resume's superseded steps would
        // interleave with the new ones), as a host that folds as it goes keeps it.
        let mut trend = RunSummary::default();
        for rec in runlog::Reader::open(log)?.flatten() {
            match rec.event {
                Event::RunStarted { .. } => trend = RunSummary::default(),
                Event::Step { .. } => {
                    trend.apply(&rec.event);
                }
                _ => {}
            }
        }
        (r.loss_trend, r.trend_stride, r.trend_seen) = (trend.loss_trend, trend.trend_stride, trend.trend_seen);
        r.keys = last_table(log, len);
        Ok(r)
    }

    /// Folds one event in. False for a resume's start, after which only a rebuild from
    /// the whole log is right (what was logged past its step no longer counts).
    pub fn apply(&mut self, ev: &Event) -> bool {
        if let Some(step) = ev.step() {
            self.seg_last = Some(self.seg_last.map_or(step, |s| s.max(step)));
        }
        match ev {
            Event::RunStarted { run_id, config_name, resumed_from_step, parent_run, branch_step, .. } => {
                if resumed_from_step.is_some() {
                    return false;
                }
                self.run_id.clone_from(run_id);
                self.config_name.clone_from(config_name);
                self.status = "unknown".into();
                if let (None, Some(p), Some(s)) = (&self.parent, parent_run, branch_step) {
                    self.parent = Some(Parent { run_id: p.clone(), branch_step: *s });
                }
                if let Some(s) = self.seg_last.take() {
                    self.prev_last = Some(s);
                }
            }
            Event::Step { metrics, .. } | Event::Eval { metrics, .. } => {
                for (k, v) in metrics {
                    self.see(k, *v);
                }
                if let Event::Step { metrics, .. } = ev
                    && let Some(loss) = metrics.get("train_loss").or_else(|| metrics.get("loss"))
                {
                    self.trend(*loss);
                }
            }
            Event::Probe { layer, metrics, .. } => {
                for (k, v) in metrics {
                    self.see(&format!("{layer}/{k}"), *v);
                }
            }
            Event::PhaseChanged { to, .. } => self.phase.clone_from(to),
            Event::RunInfo { tags, .. } => self.tags.clone_from(tags),
            Event::RunEnded { status, .. } => self.status = status.as_str().to_string(),
            _ => {}
        }
        self.step = self.seg_last.or(self.prev_last).unwrap_or(0);
        true
    }

    fn trend(&mut self, loss: f64) {
        if self.trend_seen.is_multiple_of(self.trend_stride.max(1)) {
            self.loss_trend.push(loss);
            if self.loss_trend.len() > TREND_POINTS {
                let kept: Vec<f64> = self.loss_trend.iter().copied().step_by(2).collect();
                self.loss_trend = kept;
                self.trend_stride = self.trend_stride.max(1) * 2;
            }
        }
        self.trend_seen += 1;
    }

    fn see(&mut self, name: &str, v: f64) {
        let v = v.is_finite().then_some(v);
        match self.metrics.get_mut(name) {
            Some(slot) => *slot = v,
            None => {
                self.metrics.insert(name.to_string(), v);
            }
        }
    }

    /// Reads a run directory's summary (`None` when missing, unreadable or of another
    /// version).
    pub fn load(run_dir: &Path) -> Option<RunSummary> {
        let bytes = std::fs::read(run_dir.join(FILE)).ok()?;
        serde_json::from_slice::<RunSummary>(&bytes).ok().filter(|s| s.version == VERSION)
    }

    /// Writes it into `run_dir` atomically (temp file + rename; never fsynced: it can
    /// always be rebuilt from the log), with the run's file mode.
    pub fn save(&mut self, run_dir: &Path) -> io::Result<()> {
        use std::io::Write;
        self.updated_at = crate::rundir::now_unix();
        let path = run_dir.join(FILE);
        // Unique per process: `ls` may rebuild an old run's summary while another does.
        let tmp = run_dir.join(format!("{FILE}.{}.tmp", std::process::id()));
        let result = (|| {
            let mut f = crate::modes::create_file(&tmp)?;
            f.write_all(&serde_json::to_vec(self).map_err(io::Error::from)?)?;
            std::fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// A run's summary as of its log's current length, without folding the whole log when
    /// its `summary.json` fits: that file as it is when it reflects the whole log; caught up
    /// over the log's bytes after it when the log has grown; else (missing, unreadable, a
    /// log that was cut, damage or a resume after it) rebuilt from the whole log. A summary
    /// caught up or rebuilt is saved for the next `ls` when no host holds the run (a live
    /// host keeps its own).
    pub fn current(dir: &RunDir, host: HostState) -> Option<RunSummary> {
        let log = dir.log();
        let len = std::fs::metadata(&log).ok()?.len();
        let saved = RunSummary::load(&dir.path);
        if let Some(s) = &saved
            && s.log_len == len
        {
            return saved;
        }
        // (A summary that stopped before a torn tail is caught up over those bytes again:
        // cheap, and right if the writer finishes the record.)
        let caught_up = saved.filter(|s| s.log_len < len).and_then(|s| s.catch_up(&log, len));
        let mut s = match caught_up {
            Some(s) => s,
            None => RunSummary::rebuild(&log).ok()?,
        };
        if host == HostState::Gone {
            let _ = s.save(&dir.path);
        }
        Some(s)
    }

    /// Brings a summary up to a log that grew past `log_len` to `len`: folds the records
    /// after it (up to a record still being written, where its `log_len` then stops).
    /// `None` when that cannot be trusted (damage, a resume, an undecodable record):
    /// then the caller rebuilds.
    pub fn catch_up(&self, log: &Path, len: u64) -> Option<RunSummary> {
        let mut next = self.clone();
        let mut f = std::fs::File::open(log).ok()?;
        let schema = runlog::Reader::new(&mut f).ok()?.schema();
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(self.log_len)).ok()?;
        let mut tables = runlog::KeyTables::default();
        if let Some(t) = &self.keys {
            tables.insert(t.clone());
        }
        let mut reader =
            runlog::Reader::at(std::io::Read::take(f, len - self.log_len), self.log_len, schema).with_keys(&tables);
        for item in &mut reader {
            match item {
                Ok(r) if next.apply(&r.event) => {}
                // A record the writer is still writing: the summary stops before it.
                Err(p) if p.kind == runlog::ProblemKind::TornTail => {}
                _ => return None,
            }
        }
        next.log_len = reader.good_end();
        if let Some(t) = reader.tables().last() {
            next.keys = Some(t.clone());
        }
        Some(next)
    }
}

/// The key table of the log's last `keys` event before `len` (what compact step
/// records after it use until a new table is recorded).
fn last_table(log: &Path, len: u64) -> Option<KeyTable> {
    runlog::key_tables_before(log, len).ok()?.last().cloned()
}

/// A run's log writer that keeps its `summary.json`: the one writer both hosts use.
pub struct RunLog {
    writer: Writer,
    log: PathBuf,
    dir: PathBuf,
    state: RunSummary,
    last_write: Option<Instant>,
    /// Events folded since the last write; one that must be written at once.
    dirty: bool,
    urgent: bool,
    /// A resume's start was appended: rebuild from the log at the next write.
    rebuild: bool,
}

impl RunLog {
    /// Creates a run's log (see [`Writer::create`]).
    pub fn create(log: &Path) -> io::Result<RunLog> {
        let writer = Writer::create(log)?;
        Ok(RunLog::around(writer, log, RunSummary::default()))
    }

    /// Reopens a run's log to append (see [`Writer::open_append`]); the summary is
    /// rebuilt from what the log holds after its torn tail is cut.
    pub fn open_append(log: &Path) -> io::Result<(RunLog, Option<Dropped>)> {
        let (writer, dropped) = Writer::open_append(log)?;
        let state = RunSummary::rebuild(log).unwrap_or_default();
        Ok((RunLog::around(writer, log, state), dropped))
    }

    fn around(writer: Writer, log: &Path, state: RunSummary) -> RunLog {
        let dir = log.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        RunLog {
            writer,
            log: log.to_path_buf(),
            dir,
            state,
            last_write: None,
            dirty: true,
            urgent: true,
            rebuild: false,
        }
    }

    /// Appends (see [`Writer::append`]) and folds the event into the summary; a start,
    /// phase change or end is flushed and written at once.
    pub fn append(&mut self, event: &Event) -> io::Result<()> {
        self.writer.append(event)?;
        if !self.state.apply(event) {
            self.rebuild = true;
        }
        self.dirty = true;
        if matches!(event, Event::RunStarted { .. } | Event::PhaseChanged { .. } | Event::RunEnded { .. }) {
            self.urgent = true;
            self.writer.flush()?;
            self.keep_summary();
        }
        Ok(())
    }

    pub fn flush_if_due(&mut self) -> io::Result<()> {
        self.writer.flush_if_due()?;
        self.keep_summary();
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()?;
        self.keep_summary();
        Ok(())
    }

    /// Flushes, fsyncs the log, and writes the summary if anything changed.
    pub fn sync(&mut self) -> io::Result<()> {
        self.writer.sync()?;
        self.urgent |= self.dirty;
        self.keep_summary();
        Ok(())
    }

    pub fn offset(&self) -> u64 {
        self.writer.offset()
    }

    pub fn set_flush_interval(&mut self, interval: Duration) {
        self.writer.set_flush_interval(interval);
    }

    /// The summary as last folded.
    pub fn summary(&self) -> &RunSummary {
        &self.state
    }

    /// Writes the summary when it is due and it reflects exactly the bytes on disk (no
    /// records buffered). A failure to write it is not the run's: `ls` rebuilds it.
    fn keep_summary(&mut self) {
        if !self.dirty || self.writer.flushed() != self.writer.offset() {
            return;
        }
        if !self.urgent && self.last_write.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        if self.rebuild {
            match RunSummary::rebuild(&self.log) {
                Ok(s) => self.state = s,
                Err(_) => return,
            }
            self.rebuild = false;
        }
        self.state.log_len = self.writer.offset();
        if let Some(t) = self.writer.key_table().filter(|t| !t.metrics.is_empty() || !t.phases.is_empty()) {
            self.state.keys = Some(t.clone());
        }
        let _ = self.state.save(&self.dir);
        self.last_write = Some(Instant::now());
        self.dirty = false;
        self.urgent = false;
    }
}

impl Drop for RunLog {
    fn drop(&mut self) {
        let _ = self.writer.flush();
        self.urgent |= self.dirty;
        self.keep_summary();
    }
}

fn one() -> u64 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Metrics, PhaseCause, RunStatus};

    fn started(resumed: Option<u64>) -> Event {
        Event::RunStarted {
            run_id: "r1".into(),
            schema_major: 1,
            schema_minor: 4,
            config_name: "demo".into(),
            config: serde_json::json!({}),
            phases: vec!["warmup".into(), "main".into()],
            device: "cpu".into(),
            seed: 1,
            started_at: 1.0,
            resumed_from_step: resumed,
            parent_run: Some("parent".into()),
            branch_step: Some(40),
        }
    }

    fn steps(from: u64, to: u64, phase: &str) -> Vec<Event> {
        (from..to)
            .map(|s| {
                let m: Metrics = [("train_loss".to_string(), 1.0 / (s + 1) as f64), ("lr".to_string(), 1e-3)].into();
                Event::Step { step: s, phase: phase.into(), t: s as f64, metrics: m }
            })
            .collect()
    }

    /// The sparkline's trend spans the whole run, evenly, within its bound, whether
    /// folded by a host as it goes or rebuilt from a log.
    #[test]
    fn the_loss_trend_spans_the_run_within_its_bound() {
        let mut r = RunSummary::default();
        r.apply(&started(None));
        for ev in steps(0, 1000, "main") {
            r.apply(&ev);
        }
        let t = &r.loss_trend;
        assert!(t.len() <= TREND_POINTS && t.len() >= TREND_POINTS / 2, "{}", t.len());
        assert_eq!(t[0], 1.0, "the first step's loss");
        // Evenly spaced: the steps behind the values are one stride apart.
        let stepped: Vec<u64> = t.iter().map(|l| (1.0 / l).round() as u64 - 1).collect();
        let gaps: std::collections::BTreeSet<u64> = stepped.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps.len(), 1, "{stepped:?}");
        assert!(*stepped.last().unwrap() + r.trend_stride >= 1000 - r.trend_stride, "reaches the end: {stepped:?}");
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("events.log");
        let mut w = Writer::create(&log).unwrap();
        w.append(&started(None)).unwrap();
        for ev in steps(0, 1000, "main") {
            w.append(&ev).unwrap();
        }
        w.sync().unwrap();
        let rebuilt = RunSummary::rebuild(&log).unwrap();
        assert_eq!(rebuilt.loss_trend, r.loss_trend, "a rebuild finds the same trend");
    }

    fn phase(step: u64, to: &str) -> Event {
        Event::PhaseChanged { step, from: None, to: to.into(), cause: PhaseCause::Scheduled, detail: None }
    }

    /// What `ls` shows, and the metrics: the fields a summary must get right (the
    /// bookkeeping cleared).
    fn shown(s: &RunSummary) -> RunSummary {
        // The trend is compared at f32 precision: a value read back from summary.json may
        // differ from the one folded in its last bit.
        let loss_trend = s.loss_trend.iter().map(|&v| v as f32 as f64).collect();
        RunSummary { log_len: 0, updated_at: 0.0, keys: None, seg_last: None, prev_last: None, loss_trend, ..s.clone() }
    }

    #[test]
    fn the_fold_agrees_with_inspect_and_the_host_keeps_the_file_current() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("events.log");
        let mut first = vec![started(None), phase(0, "warmup")];
        first.extend(steps(1, 300, "warmup"));
        first.push(phase(300, "main"));
        first.push(Event::Eval {
            step: 300,
            split: "system".into(),
            metrics: [("sys/cpu_pct".to_string(), f64::NAN)].into(),
        });
        first.extend(steps(300, 500, "main"));
        let mut w = RunLog::create(&log).unwrap();
        for e in &first {
            w.append(e).unwrap();
            w.flush_if_due().unwrap();
        }
        // The phase change was written at once, with the log length it reflects.
        let on_disk = RunSummary::load(tmp.path()).unwrap();
        assert!(on_disk.log_len <= w.offset());
        assert_eq!(on_disk.phase, "main");
        w.sync().unwrap();
        let on_disk = RunSummary::load(tmp.path()).unwrap();
        assert_eq!(on_disk.log_len, std::fs::metadata(&log).unwrap().len());
        let rebuilt = RunSummary::rebuild(&log).unwrap();
        assert_eq!(shown(&on_disk), shown(&rebuilt));
        assert_eq!((on_disk.step, on_disk.status.as_str(), on_disk.phase.as_str()), (499, "unknown", "main"));
        assert_eq!(on_disk.metrics["sys/cpu_pct"], None);
        assert_eq!(on_disk.keys.as_ref().map(|k| k.metrics.len()), Some(2));
        drop(w);

        // Resumed at step 200 (what came after is superseded), then ended.
        let (mut w, _) = RunLog::open_append(&log).unwrap();
        w.append(&started(Some(200))).unwrap();
        w.append(&phase(200, "cool")).unwrap();
        for e in steps(201, 250, "cool") {
            w.append(&e).unwrap();
        }
        w.append(&Event::RunInfo {
            step: 250,
            job_config: serde_json::json!({}),
            tags: vec!["sweep".into()],
            notes: String::new(),
            group: None,
        })
        .unwrap();
        w.append(&Event::RunEnded { step: 250, status: RunStatus::Completed, message: "done".into() }).unwrap();
        drop(w);
        let on_disk = RunSummary::load(tmp.path()).unwrap();
        let rebuilt = RunSummary::rebuild(&log).unwrap();
        assert_eq!(shown(&on_disk), shown(&rebuilt));
        assert_eq!(on_disk.log_len, std::fs::metadata(&log).unwrap().len());
        assert_eq!((on_disk.step, on_disk.status.as_str(), on_disk.phase.as_str()), (250, "completed", "cool"));
        assert_eq!(on_disk.tags, vec!["sweep".to_string()]);
        // Modes follow the run directory, whatever the umask.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.path().join(FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, crate::modes::file_mode_in(tmp.path()));
    }

    #[test]
    fn catch_up_folds_only_the_bytes_after_the_summary() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("events.log");
        let mut w = RunLog::create(&log).unwrap();
        w.append(&started(None)).unwrap();
        w.append(&phase(0, "warmup")).unwrap();
        for e in steps(1, 100, "warmup") {
            w.append(&e).unwrap();
        }
        w.sync().unwrap();
        let saved = RunSummary::load(tmp.path()).unwrap();
        // More records reach the log than the summary reflects (written within the second).
        let mut more = vec![phase(100, "main")];
        more.extend(steps(100, 180, "main"));
        drop(w);
        let (mut raw, _) = Writer::open_append(&log).unwrap();
        for e in &more {
            raw.append(e).unwrap();
        }
        drop(raw);
        let len = std::fs::metadata(&log).unwrap().len();
        let caught = saved.catch_up(&log, len).unwrap();
        assert_eq!(shown(&caught), shown(&RunSummary::rebuild(&log).unwrap()));
        assert_eq!((caught.step, caught.phase.as_str(), caught.log_len), (179, "main", len));
        // A resume after the summary: not caught up (the caller rebuilds).
        let (mut raw, _) = Writer::open_append(&log).unwrap();
        raw.append(&started(Some(50))).unwrap();
        drop(raw);
        let len = std::fs::metadata(&log).unwrap().len();
        assert!(caught.catch_up(&log, len).is_none());
        // Damage after it: not caught up either.
        let mut bytes = std::fs::read(&log).unwrap();
        let at = saved.log_len as usize + 20;
        bytes[at] ^= 0xff;
        std::fs::write(&log, &bytes).unwrap();
        assert!(saved.catch_up(&log, bytes.len() as u64).is_none());
    }
}
