//! The run log under damage: round trips, truncation, flipped bytes, garbage, wrong
//! headers, resume after a torn tail, and the live tail never returning half a record.

use phasetop::event::{Command, Event, LogLevel, Metrics, PhaseCause, RunStatus, SCHEMA_MAJOR, SCHEMA_MINOR};
use phasetop::runlog::{self, LogError, ProblemKind, Reader, Tail, Writer};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn metrics(pairs: &[(&str, f64)]) -> Metrics {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// One event of every kind, then `n` steps with the odd probe, eval and log line.
fn sample_events(n: u64) -> Vec<Event> {
    let mut evs = vec![
        Event::RunStarted {
            run_id: "run-1".into(),
            schema_major: SCHEMA_MAJOR,
            schema_minor: SCHEMA_MINOR,
            config_name: "demo".into(),
            config: serde_json::json!({"max_steps": 100, "phases": [{"name": "warmup"}]}),
            phases: vec!["warmup".into(), "main".into()],
            device: "cpu".into(),
            seed: 42,
            started_at: 1_700_000_000.25,
            resumed_from_step: None,
            parent_run: None,
            branch_step: None,
        },
        Event::PhaseChanged { step: 0, from: None, to: "warmup".into(), cause: PhaseCause::Start, detail: None },
    ];
    for s in 1..=n {
        evs.push(Event::Step {
            step: s,
            phase: "warmup".into(),
            t: 1_700_000_000.0 + s as f64 * 0.01,
            metrics: metrics(&[("train_loss", 2.0 / s as f64), ("lr", 1e-3), ("grad_norm", 0.5 + s as f64)]),
        });
        match s % 7 {
            0 => evs.push(Event::Eval { step: s, split: "val".into(), metrics: metrics(&[("val_loss", 1.0)]) }),
            3 => evs.push(Event::Log { step: s, level: LogLevel::Info, message: format!("note {s} — ünïcode") }),
            5 => evs.push(Event::Probe { step: s, layer: "l1".into(), metrics: metrics(&[("eff_rank", 3.5)]) }),
            _ => {}
        }
    }
    evs.extend([
        Event::Signal {
            step: n,
            detector: "plateau".into(),
            metric: "train_loss".into(),
            score: 0.75,
            message: "flat".into(),
            figures: Default::default(),
        },
        Event::Suggestion { step: n, id: 1, to_phase: "main".into(), because: "plateau".into() },
        Event::Command {
            step: n,
            t: 1.0,
            client: "ctl".into(),
            command: Command::Set { key: "lr".into(), value: 0.01 },
            applied: true,
            message: "ok".into(),
        },
        Event::PhaseChanged {
            step: n,
            from: Some("warmup".into()),
            to: "main".into(),
            cause: PhaseCause::Suggestion,
            detail: Some("accepted #1".into()),
        },
        Event::Checkpoint { step: n, path: "checkpoints/step-1.safetensors".into() },
        Event::RunEnded { step: n, status: RunStatus::Completed, message: "done".into() },
    ]);
    evs
}

/// Writes `events` to a new log in `dir`; returns the path and the file's bytes.
/// Writes a log of JSON records: these framing tests need each record to stand alone
/// (compact step records, which need their key table, have tests/runlog_compact.rs).
fn write_log(dir: &Path, events: &[Event]) -> (PathBuf, Vec<u8>) {
    let path = dir.join("events.log");
    let mut w = Writer::create(&path).unwrap();
    w.set_compact_steps(false);
    for e in events {
        w.append(e).unwrap();
    }
    drop(w);
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

/// The encoded bytes of one record, built independently of the writer.
fn encode(ev: &Event) -> Vec<u8> {
    let payload = serde_json::to_vec(ev).unwrap();
    let mut out = Vec::new();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// (start, end) of each record in a clean log.
fn spans(bytes: &[u8]) -> Vec<(u64, u64)> {
    let c = runlog::read_bytes(bytes).unwrap();
    assert!(c.problems.is_empty());
    let mut ends: Vec<u64> = c.records.iter().skip(1).map(|r| r.offset).collect();
    ends.push(bytes.len() as u64);
    c.records.iter().zip(ends).map(|(r, e)| (r.offset, e)).collect()
}

/// Equal, but for floats within a few ULP: serde_json (without its `float_roundtrip`
/// feature) may read a float back one ULP off.
fn same(a: &Event, b: &Event) -> bool {
    fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
        use serde_json::Value::*;
        match (a, b) {
            (Number(x), Number(y)) => match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs()),
                _ => x == y,
            },
            (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y)),
            (Object(x), Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
            }
            _ => a == b,
        }
    }
    a == b || close(&serde_json::to_value(a).unwrap(), &serde_json::to_value(b).unwrap())
}

fn same_all(a: &[Event], b: &[Event]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
}

#[test]
fn round_trip_every_event_kind() {
    let dir = tempfile::tempdir().unwrap();
    let events = sample_events(30);
    let (path, bytes) = write_log(dir.path(), &events);
    assert_eq!(&bytes[..8], b"PHTOPLOG");
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), SCHEMA_MAJOR);
    assert_eq!(u32::from_le_bytes(bytes[12..16].try_into().unwrap()), SCHEMA_MINOR);

    let c = runlog::read_all(&path).unwrap();
    assert_eq!((c.schema_major, c.schema_minor), (SCHEMA_MAJOR, SCHEMA_MINOR));
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    assert_eq!(c.records.len(), events.len());
    for (r, e) in c.records.iter().zip(&events) {
        assert!(same(&r.event, e), "{:?} != {:?}", r.event, e);
    }
    assert_eq!(c.records[0].offset, 16);
    // Records are back to back, each exactly the independent encoding.
    let mut off = 16usize;
    for (r, e) in c.records.iter().zip(&events) {
        assert_eq!(r.offset as usize, off);
        let enc = encode(e);
        assert_eq!(&bytes[off..off + enc.len()], &enc[..]);
        off += enc.len();
    }
    assert_eq!(off, bytes.len());

    // The streaming reader yields the same.
    let streamed: Vec<Event> = Reader::open(&path).unwrap().map(|r| r.unwrap().event).collect();
    assert!(same_all(&streamed, &events));
}

#[test]
fn nan_metrics_survive_as_nan() {
    let dir = tempfile::tempdir().unwrap();
    let ev = Event::Step { step: 1, phase: "p".into(), t: 0.0, metrics: metrics(&[("train_loss", f64::NAN)]) };
    let (path, _) = write_log(dir.path(), &[ev]);
    let c = runlog::read_all(&path).unwrap();
    let Event::Step { metrics, .. } = &c.records[0].event else { panic!() };
    assert!(metrics["train_loss"].is_nan());
}

#[test]
fn create_refuses_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_log(dir.path(), &sample_events(1));
    assert_eq!(Writer::create(&path).err().unwrap().kind(), std::io::ErrorKind::AlreadyExists);
}

#[test]
fn writer_buffers_until_flush_and_drop_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let mut w = Writer::create(&path).unwrap();
    w.set_flush_interval(Duration::from_secs(3600));
    let ev = Event::Log { step: 1, level: LogLevel::Warn, message: "x".into() };
    w.append(&ev).unwrap();
    w.flush_if_due().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 16, "header only: the record is buffered");
    w.flush().unwrap();
    assert_eq!(runlog::read_all(&path).unwrap().records.len(), 1);
    w.set_flush_interval(Duration::ZERO);
    w.append(&ev).unwrap();
    w.flush_if_due().unwrap();
    assert_eq!(runlog::read_all(&path).unwrap().records.len(), 2);
    w.set_flush_interval(Duration::from_secs(3600));
    w.append(&ev).unwrap();
    assert_eq!(w.offset(), std::fs::metadata(&path).unwrap().len() + encode(&ev).len() as u64);
    w.sync().unwrap();
    w.append(&ev).unwrap();
    drop(w);
    assert_eq!(runlog::read_all(&path).unwrap().records.len(), 4);
}

#[test]
fn flush_if_due_flushes_every_call_when_calls_are_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let len = || std::fs::metadata(&path).unwrap().len();
    let mut w = Writer::create(&path).unwrap();
    // An interval long enough that no stall of a busy machine between two calls here
    // passes for a slow step.
    w.set_flush_interval(Duration::from_secs(3));
    let ev = Event::Log { step: 1, level: LogLevel::Info, message: "x".into() };
    // Calls close together: the first append waits for the interval.
    w.flush_if_due().unwrap();
    w.append(&ev).unwrap();
    w.flush_if_due().unwrap();
    assert_eq!(len(), 16);
    // A slow step: a gap longer than the interval between calls. From then on each call
    // flushes, including the second record of the burst right after the first.
    std::thread::sleep(Duration::from_millis(3100));
    w.append(&ev).unwrap();
    w.flush_if_due().unwrap();
    assert_eq!(len(), w.offset());
    w.append(&ev).unwrap();
    w.flush_if_due().unwrap();
    assert_eq!(len(), w.offset(), "the record after a flush is flushed too while calls are sparse");
    // Many quick calls later, it batches again.
    for _ in 0..20 {
        w.flush_if_due().unwrap();
    }
    w.append(&ev).unwrap();
    w.flush_if_due().unwrap();
    assert!(len() < w.offset());
}

#[test]
fn oversized_event_is_refused_and_the_log_stays_good() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let mut w = Writer::create(&path).unwrap();
    let small = Event::Log { step: 1, level: LogLevel::Info, message: "a".into() };
    w.append(&small).unwrap();
    let huge = Event::Log { step: 2, level: LogLevel::Info, message: "x".repeat(17 << 20) };
    let err = w.append(&huge).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    w.append(&small).unwrap();
    drop(w);
    let c = runlog::read_all(&path).unwrap();
    assert_eq!(c.records.len(), 2);
    assert!(c.problems.is_empty());
}

#[test]
fn truncation_at_random_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = write_log(dir.path(), &sample_events(40));
    let spans = spans(&bytes);
    let mut rng = StdRng::seed_from_u64(7);
    let mut cuts: Vec<usize> = (0..400).map(|_| rng.random_range(0..=bytes.len())).collect();
    // Every byte of a few records, and the edges.
    cuts.extend(0..40);
    cuts.extend(spans[5].0 as usize..=spans[6].1 as usize);
    cuts.push(bytes.len());
    for cut in cuts {
        let data = &bytes[..cut];
        let c = match runlog::read_bytes(data) {
            Ok(c) => c,
            Err(LogError::TooShort { len }) => {
                assert!(cut < 16 && len == cut);
                continue;
            }
            Err(e) => panic!("cut {cut}: {e}"),
        };
        assert!(cut >= 16);
        let whole: Vec<_> = spans.iter().filter(|(_, e)| *e as usize <= cut).collect();
        assert_eq!(c.records.len(), whole.len(), "cut at {cut}");
        for (r, (s, _)) in c.records.iter().zip(&whole) {
            assert_eq!(r.offset, *s);
        }
        match spans.iter().find(|(s, e)| (*s as usize) < cut && cut < *e as usize) {
            None => assert!(c.problems.is_empty(), "cut {cut} at a boundary: {:?}", c.problems),
            Some((s, _)) => {
                assert_eq!(c.problems.len(), 1, "cut at {cut}: {:?}", c.problems);
                assert_eq!(c.problems[0].kind, ProblemKind::TornTail, "cut at {cut}: {:?}", c.problems);
                assert_eq!(c.problems[0].offset, *s);
            }
        }
    }
}

/// Flips bytes and checks that every untouched record is read, the touched ones are not,
/// and each run of adjacent touched records is reported once, at its start.
fn check_flips(bytes: &[u8], spans: &[(u64, u64)], flips: &[(usize, u8)], c: &runlog::LogContents) {
    let touched: Vec<bool> =
        spans.iter().map(|(s, e)| flips.iter().any(|(o, _)| (*s as usize..*e as usize).contains(o))).collect();
    let expect: Vec<u64> = spans.iter().zip(&touched).filter(|(_, t)| !**t).map(|(s, _)| s.0).collect();
    let got: Vec<u64> = c.records.iter().map(|r| r.offset).collect();
    assert_eq!(got, expect, "flips {flips:?} (file of {} bytes)", bytes.len());
    let run_starts: Vec<u64> =
        (0..spans.len()).filter(|&i| touched[i] && (i == 0 || !touched[i - 1])).map(|i| spans[i].0).collect();
    let problem_starts: Vec<u64> = c.problems.iter().map(|p| p.offset).collect();
    assert_eq!(problem_starts, run_starts, "flips {flips:?}: {:?}", c.problems);
}

#[test]
fn flipped_bytes_at_random_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = write_log(dir.path(), &sample_events(60));
    let spans = spans(&bytes);
    let mut rng = StdRng::seed_from_u64(1234);
    for trial in 0..600 {
        let n = 1 + trial % 4;
        let flips: Vec<(usize, u8)> =
            (0..n).map(|_| (rng.random_range(16..bytes.len()), rng.random_range(1..=255u8))).collect();
        let mut data = bytes.clone();
        for (o, x) in &flips {
            data[*o] ^= x;
        }
        let c = runlog::read_bytes(&data).unwrap();
        check_flips(&bytes, &spans, &flips, &c);
        for p in &c.problems {
            assert!(
                matches!(p.kind, ProblemKind::CrcMismatch | ProblemKind::BadLength | ProblemKind::TornTail),
                "{p:?}"
            );
        }
    }
}

#[test]
fn flipped_bytes_in_a_large_file_across_read_chunks() {
    // Several MiB, so that the streaming reader's 1 MiB window boundaries fall inside
    // records and inside damaged spans.
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = write_log(dir.path(), &sample_events(40_000));
    assert!(bytes.len() > 3 << 20);
    let spans = spans(&bytes);
    let mut rng = StdRng::seed_from_u64(99);
    for _ in 0..6 {
        let mut flips: Vec<(usize, u8)> = (1..=3).map(|k| ((k << 20) + rng.random_range(0..64) - 32, 0xff)).collect();
        flips.push((rng.random_range(16..bytes.len()), 0x10));
        flips.sort();
        let mut data = bytes.clone();
        for (o, x) in &flips {
            data[*o] ^= x;
        }
        std::fs::write(&path, &data).unwrap();
        let c = runlog::read_all(&path).unwrap();
        check_flips(&bytes, &spans, &flips, &c);
    }
}

#[test]
fn damaged_length_word_that_runs_past_the_end_is_a_bad_length_when_records_follow() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut bytes) = write_log(dir.path(), &sample_events(10));
    let spans = spans(&bytes);
    let (s, _) = spans[3];
    // A plausible length (1 MiB) that runs past the end of the file.
    bytes[s as usize..s as usize + 4].copy_from_slice(&(1u32 << 20).to_le_bytes());
    let c = runlog::read_bytes(&bytes).unwrap();
    assert_eq!(c.records.len(), spans.len() - 1);
    assert_eq!(c.problems.len(), 1);
    assert_eq!(c.problems[0].kind, ProblemKind::BadLength);
    assert_eq!(c.problems[0].offset, s);
    assert!(c.problems[0].detail.contains(&format!("resynchronised at offset {}", spans[4].0)), "{:?}", c.problems);
}

#[test]
fn garbage_appended() {
    let dir = tempfile::tempdir().unwrap();
    let events = sample_events(20);
    let (path, bytes) = write_log(dir.path(), &events);
    let mut rng = StdRng::seed_from_u64(5);
    for len in [1usize, 7, 8, 9, 100, 5000] {
        let mut data = bytes.clone();
        data.extend((0..len).map(|_| rng.random::<u8>()));
        let c = runlog::read_bytes(&data).unwrap();
        assert_eq!(c.records.len(), events.len(), "garbage of {len}");
        assert_eq!(c.problems.len(), 1, "garbage of {len}: {:?}", c.problems);
        assert_eq!(c.problems[0].offset, bytes.len() as u64);
    }
    // Text garbage, then good records again (a crashed writer, then someone appended).
    let mut data = bytes.clone();
    data.extend_from_slice(b"this is not a record at all, just some text\n");
    data.extend(encode(&events[3]));
    data.extend(encode(&events[4]));
    std::fs::write(&path, &data).unwrap();
    let c = runlog::read_all(&path).unwrap();
    assert_eq!(c.records.len(), events.len() + 2);
    assert_eq!(c.problems.len(), 1);
    assert_eq!(c.problems[0].offset, bytes.len() as u64);
    // Zeros (a filesystem's view of a tail never written): one span, not one per word.
    let mut data = bytes.clone();
    data.extend(vec![0u8; 4096]);
    let c = runlog::read_bytes(&data).unwrap();
    assert_eq!(c.records.len(), events.len());
    assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
    assert_eq!(c.problems[0].kind, ProblemKind::BadLength);
}

#[test]
fn intact_records_that_are_not_events() {
    let dir = tempfile::tempdir().unwrap();
    let events = sample_events(3);
    let (_, mut bytes) = write_log(dir.path(), &events);
    let frame = |payload: &[u8]| {
        let mut out = (payload.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
        out.extend_from_slice(payload);
        out
    };
    let unknown_at = bytes.len() as u64;
    bytes.extend(frame(br#"{"type":"from_the_future","step":3}"#));
    let bad_at = bytes.len() as u64;
    bytes.extend(frame(br#"{"type":"step","step":"three"}"#));
    let not_json_at = bytes.len() as u64;
    bytes.extend(frame(b"\xff\xfe not json"));
    bytes.extend(encode(&events[0]));
    let c = runlog::read_bytes(&bytes).unwrap();
    assert_eq!(c.records.len(), events.len() + 1);
    let kinds: Vec<(u64, ProblemKind)> = c.problems.iter().map(|p| (p.offset, p.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (unknown_at, ProblemKind::UnknownEvent),
            (bad_at, ProblemKind::InvalidJson),
            (not_json_at, ProblemKind::InvalidJson)
        ]
    );
    assert!(c.problems[0].detail.contains("from_the_future"), "{}", c.problems[0].detail);
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(11);
    let header = runlog::header_bytes();
    for i in 0..3000 {
        let len = rng.random_range(0..if i % 10 == 0 { 5000 } else { 200 });
        let mut data: Vec<u8> = if i % 3 == 0 { Vec::new() } else { header.to_vec() };
        data.extend((0..len).map(|_| match rng.random_range(0..4) {
            0 => 0,
            1 => b'{',
            2 => b'}',
            _ => rng.random::<u8>(),
        }));
        if let Ok(c) = runlog::read_bytes(&data) {
            let mut last = 0;
            for p in &c.problems {
                assert!(p.offset >= last && p.offset < data.len() as u64);
                last = p.offset + 1;
            }
        }
    }
    // Plausible frames with random contents and lengths.
    for _ in 0..500 {
        let mut data = header.to_vec();
        for _ in 0..rng.random_range(1..6) {
            let len = rng.random_range(0..40u32);
            data.extend(len.to_le_bytes());
            data.extend(rng.random::<u32>().to_le_bytes());
            data.extend((0..rng.random_range(0..40)).map(|_| rng.random::<u8>()));
        }
        let _ = runlog::read_bytes(&data).unwrap();
    }
}

#[test]
fn wrong_magic_and_short_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    std::fs::write(&path, b"NOTALOG!\x01\0\0\0\0\0\0\0").unwrap();
    let err = runlog::read_all(&path).unwrap_err();
    assert!(matches!(err, LogError::BadMagic));
    assert_eq!(err.to_string(), "not a phasetop run log: bad magic at offset 0");
    assert!(Writer::open_append(&path).is_err());
    assert_eq!(Tail::new(&path).poll().unwrap_err().kind(), std::io::ErrorKind::InvalidData);

    std::fs::write(&path, b"").unwrap();
    assert!(matches!(runlog::read_all(&path).unwrap_err(), LogError::TooShort { len: 0 }));
    std::fs::write(&path, b"PHTOPLOG\x01").unwrap();
    assert!(matches!(runlog::read_all(&path).unwrap_err(), LogError::TooShort { len: 9 }));
    std::fs::write(&path, b"hello").unwrap();
    assert!(matches!(runlog::read_all(&path).unwrap_err(), LogError::BadMagic));

    let missing = dir.path().join("nope.log");
    let err = runlog::read_all(&missing).unwrap_err();
    assert!(matches!(err, LogError::Io { .. }));
    assert!(err.to_string().contains("nope.log"), "{err}");
}

#[test]
fn newer_major_is_refused_newer_minor_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = write_log(dir.path(), &sample_events(2));
    let mut newer = bytes.clone();
    newer[8..12].copy_from_slice(&(SCHEMA_MAJOR + 1).to_le_bytes());
    std::fs::write(&path, &newer).unwrap();
    let err = runlog::read_all(&path).unwrap_err();
    assert!(matches!(err, LogError::NewerSchema { major: 2, .. }));
    assert_eq!(err.to_string(), "written by a newer phasetop (schema 2.x); this build reads 1.x");
    let err = Writer::open_append(&path).err().unwrap();
    assert!(err.to_string().contains("newer phasetop"), "{err}");
    assert!(Tail::new(&path).poll().unwrap_err().to_string().contains("newer phasetop"));

    let mut minor = bytes.clone();
    minor[12..16].copy_from_slice(&(SCHEMA_MINOR + 3).to_le_bytes());
    std::fs::write(&path, &minor).unwrap();
    let c = runlog::read_all(&path).unwrap();
    assert_eq!(c.schema_minor, SCHEMA_MINOR + 3);
    assert!(c.problems.is_empty());
}

#[test]
fn open_append_truncates_a_torn_tail_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let events = sample_events(10);
    let (path, bytes) = write_log(dir.path(), &events);
    let spans = spans(&bytes);
    let (last_start, last_end) = *spans.last().unwrap();
    for cut in [last_start + 1, last_start + 8, last_end - 1] {
        std::fs::write(&path, &bytes[..cut as usize]).unwrap();
        let (mut w, dropped) = Writer::open_append(&path).unwrap();
        let d = dropped.expect("a torn tail is reported");
        assert_eq!((d.offset, d.bytes), (last_start, cut - last_start));
        assert_eq!(w.offset(), last_start);
        let extra = Event::Log { step: 99, level: LogLevel::Info, message: "resumed".into() };
        w.append(&extra).unwrap();
        w.append(&extra).unwrap();
        drop(w);
        let c = runlog::read_all(&path).unwrap();
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.records.len(), events.len() - 1 + 2);
        assert!(same(&c.records.last().unwrap().event, &extra));
    }
    // A clean log: nothing dropped, appends go to the end.
    let (w, dropped) = Writer::open_append(&path).unwrap();
    assert!(dropped.is_none());
    assert_eq!(w.offset(), std::fs::metadata(&path).unwrap().len());
    drop(w);
    // Garbage after the last record is dropped too; damage in the middle is kept.
    let mut data = bytes.clone();
    data[spans[2].0 as usize + 10] ^= 0x40;
    data.extend_from_slice(b"garbage garbage");
    std::fs::write(&path, &data).unwrap();
    let (w, dropped) = Writer::open_append(&path).unwrap();
    assert_eq!(dropped, Some(runlog::Dropped { bytes: 15, offset: bytes.len() as u64 }));
    drop(w);
    let c = runlog::read_all(&path).unwrap();
    assert_eq!(c.records.len(), events.len() - 1);
    assert_eq!(c.problems.len(), 1);
    assert_eq!(c.problems[0].offset, spans[2].0);
    // Only part of a header (killed right after create): a fresh header.
    std::fs::write(&path, b"PHTOP").unwrap();
    let (mut w, dropped) = Writer::open_append(&path).unwrap();
    assert_eq!(dropped, Some(runlog::Dropped { bytes: 5, offset: 0 }));
    w.append(&events[0]).unwrap();
    drop(w);
    assert_eq!(runlog::read_all(&path).unwrap().records.len(), 1);
}

#[test]
fn tail_follows_and_never_returns_half_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let mut tail = Tail::new(&path);
    assert!(tail.poll().unwrap().is_empty(), "no file yet");
    let events = sample_events(20);

    let mut w = Writer::create(&path).unwrap();
    assert!(tail.poll().unwrap().is_empty(), "header only");
    assert_eq!(tail.schema(), Some((SCHEMA_MAJOR, SCHEMA_MINOR)));
    for e in &events[..5] {
        w.append(e).unwrap();
    }
    w.flush().unwrap();
    let got: Vec<Event> = tail.poll().unwrap().into_iter().map(|r| r.event).collect();
    assert!(same_all(&got, &events[..5]));
    assert!(tail.poll().unwrap().is_empty());
    for e in &events[5..9] {
        w.append(e).unwrap();
    }
    w.flush().unwrap();
    let got: Vec<Event> = tail.poll().unwrap().into_iter().map(|r| r.event).collect();
    assert!(same_all(&got, &events[5..9]));
    drop(w);

    // A record written by hand in two halves, split at several points.
    let mut raw = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    for (i, split) in [1usize, 4, 7, 8, 9, 20].into_iter().enumerate() {
        let ev = &events[9 + i];
        let enc = encode(ev);
        let start = std::fs::metadata(&path).unwrap().len();
        raw.write_all(&enc[..split]).unwrap();
        raw.flush().unwrap();
        assert!(tail.poll().unwrap().is_empty(), "split at {split}");
        assert_eq!(tail.offset(), start);
        raw.write_all(&enc[split..]).unwrap();
        raw.flush().unwrap();
        let got = tail.poll().unwrap();
        assert_eq!(got.len(), 1, "split at {split}");
        assert_eq!(got[0].offset, start);
        assert!(same(&got[0].event, ev));
    }
    assert!(tail.take_problems().is_empty());
}

#[test]
fn tail_skips_damage_and_follows_a_resume_that_truncates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let events = sample_events(10);
    let mut w = Writer::create(&path).unwrap();
    w.append(&events[0]).unwrap();
    drop(w);
    let mut tail = Tail::new(&path);
    assert_eq!(tail.poll().unwrap().len(), 1);

    let mut raw = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    // A record with a damaged CRC, then a good one.
    let mut bad = encode(&events[1]);
    bad[5] ^= 1;
    raw.write_all(&bad).unwrap();
    raw.write_all(&encode(&events[2])).unwrap();
    let got = tail.poll().unwrap();
    assert_eq!(got.len(), 1);
    assert!(same(&got[0].event, &events[2]));
    let problems = tail.take_problems();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].kind, ProblemKind::CrcMismatch);

    // A length word damaged to a plausible size, then good records: the tail does not
    // wait forever for the rest of that "record".
    let mut bad = encode(&events[3]);
    bad[..4].copy_from_slice(&(8u32 << 20).to_le_bytes());
    raw.write_all(&bad).unwrap();
    raw.write_all(&encode(&events[4])).unwrap();
    let got = tail.poll().unwrap();
    assert_eq!(got.len(), 1);
    assert!(same(&got[0].event, &events[4]));
    assert_eq!(tail.take_problems()[0].kind, ProblemKind::BadLength);

    // The writer dies mid-record; the run resumes, truncating the torn tail.
    let enc = encode(&events[5]);
    raw.write_all(&enc[..enc.len() / 2]).unwrap();
    assert!(tail.poll().unwrap().is_empty());
    let (mut w, dropped) = Writer::open_append(&path).unwrap();
    assert_eq!(dropped.unwrap().bytes, (enc.len() / 2) as u64);
    w.append(&events[6]).unwrap();
    w.append(&events[7]).unwrap();
    w.flush().unwrap();
    let got: Vec<Event> = tail.poll().unwrap().into_iter().map(|r| r.event).collect();
    assert!(same_all(&got, &events[6..8]));
    assert!(tail.take_problems().is_empty());
    drop(w);

    // Garbage at the end (unresolved: the tail cannot tell it from a slow writer yet),
    // then a resume truncates it and writes records where it was.
    let mut raw = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    raw.write_all(b"\x07\x00\x00\x00garbage that never resolves into a record").unwrap();
    assert!(tail.poll().unwrap().is_empty());
    assert!(tail.poll().unwrap().is_empty());
    let (mut w, dropped) = Writer::open_append(&path).unwrap();
    assert!(dropped.is_some());
    w.append(&events[8]).unwrap();
    w.flush().unwrap();
    let got = tail.poll().unwrap();
    assert_eq!(got.len(), 1);
    assert!(same(&got[0].event, &events[8]));
    assert!(tail.take_problems().is_empty());
}

#[test]
fn tail_from_an_offset_after_read_all() {
    let dir = tempfile::tempdir().unwrap();
    let events = sample_events(5);
    let (path, bytes) = write_log(dir.path(), &events[..4]);
    let mut tail = Tail::from_offset(&path, bytes.len() as u64);
    assert!(tail.poll().unwrap().is_empty());
    let (mut w, _) = Writer::open_append(&path).unwrap();
    w.append(&events[4]).unwrap();
    w.flush().unwrap();
    let got = tail.poll().unwrap();
    assert_eq!(got.len(), 1);
    assert!(same(&got[0].event, &events[4]));
}

#[test]
fn large_log_streams_through_a_small_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let mut w = Writer::create(&path).unwrap();
    let n = 100_000u64;
    for s in 0..n {
        w.append(&Event::Log { step: s, level: LogLevel::Info, message: "m".repeat((s % 50) as usize) }).unwrap();
    }
    // A record bigger than the reader's 1 MiB window.
    w.append(&Event::Log { step: n, level: LogLevel::Info, message: "big".repeat(1 << 20) }).unwrap();
    drop(w);
    let mut count = 0u64;
    let mut reader = Reader::open(&path).unwrap();
    for item in &mut reader {
        let r = item.unwrap();
        assert_eq!(r.event.step(), Some(count));
        count += 1;
    }
    assert_eq!(count, n + 1);
    assert_eq!(reader.good_end(), std::fs::metadata(&path).unwrap().len());
    let mut tail = Tail::new(&path);
    assert_eq!(tail.poll().unwrap().len() as u64, n + 1);
    let mut steps = Vec::new();
    let got = Tail::new(&path).poll_each(|r| steps.push(r.event.step().unwrap())).unwrap();
    assert_eq!(got as u64, n + 1);
    assert!(steps.iter().copied().eq(0..=n));
}
