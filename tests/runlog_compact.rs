//! Compact binary step records (schema 1.4): exact round trips, their size, damage and
//! resynchronisation across them, torn tails, resume after truncation, logs that mix
//! JSON and binary step records, and readers that start mid-file.

use phasetop::event::{Event, LogLevel, Metrics, PhaseCause};
use phasetop::runlog::{self, ProblemKind, Reader, Tail, Writer};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::path::Path;

/// The demo's seven step metrics, with values that f32 could not hold.
fn demo_metrics(s: u64) -> Metrics {
    let x = s as f64;
    [
        ("train_loss", 2.317_345_123_456_789 / (1.0 + x / 1000.0)),
        ("train_acc", (x / 1e5).min(0.99)),
        ("lr", 1e-3),
        ("grad_norm", if s == 77 { f64::NAN } else { 0.5 + (x * 0.37).sin() * 0.1 }),
        ("weight_norm", 31.25 + x * 1e-6),
        ("dist_init", x.sqrt() * 1e-3),
        ("steps_per_s", 1400.0 + (x * 0.01).cos()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn step(s: u64, phase: &str) -> Event {
    Event::Step { step: s, phase: phase.into(), t: 1_765_000_000.0 + s as f64 / 1400.0, metrics: demo_metrics(s) }
}

fn start() -> Vec<Event> {
    vec![Event::PhaseChanged { step: 0, from: None, to: "warmup".into(), cause: PhaseCause::Start, detail: None }]
}

/// Equal, NaN equal to NaN (bit-exact otherwise: binary records hold f64s).
fn same(a: &Event, b: &Event) -> bool {
    a == b || serde_json::to_string(a).unwrap() == serde_json::to_string(b).unwrap()
}

fn write(path: &Path, events: &[Event]) {
    let mut w = Writer::create(path).unwrap();
    for e in events {
        w.append(e).unwrap();
    }
}

fn demo_events(n: u64) -> Vec<Event> {
    let mut evs = start();
    for s in 1..=n {
        evs.push(step(s, if s < n / 2 { "warmup" } else { "main" }));
        if s == n / 2 {
            evs.push(Event::PhaseChanged {
                step: s,
                from: Some("warmup".into()),
                to: "main".into(),
                cause: PhaseCause::Scheduled,
                detail: None,
            });
        }
        if s.is_multiple_of(100) {
            evs.push(Event::Log { step: s, level: LogLevel::Info, message: format!("at {s}") });
        }
    }
    evs
}

#[test]
fn compact_steps_round_trip_exactly_in_at_most_120_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let evs = demo_events(1000);
    write(&path, &evs);
    let c = runlog::read_all(&path).unwrap();
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    assert_eq!(c.records.len(), evs.len());
    for (r, e) in c.records.iter().zip(&evs) {
        assert!(same(&r.event, e), "{:?} != {:?}", r.event, e);
    }
    // The step records' size: from one step's offset to the next's.
    let steps: Vec<u64> =
        c.records.iter().filter(|r| matches!(r.event, Event::Step { .. })).map(|r| r.offset).collect();
    let widths: Vec<u64> = steps.windows(2).map(|w| w[1] - w[0]).collect();
    let typical = widths.iter().copied().min().unwrap();
    assert!(typical <= 120, "a step record takes {typical} bytes");
    // The same events as JSON take more than twice that.
    let json = dir.path().join("json.log");
    let mut w = Writer::create(&json).unwrap();
    w.set_compact_steps(false);
    for e in &evs {
        w.append(e).unwrap();
    }
    drop(w);
    let (a, b) = (std::fs::metadata(&path).unwrap().len(), std::fs::metadata(&json).unwrap().len());
    assert!(b > 2 * a, "json {b} bytes, compact {a}");
    // Both read back the same events.
    let cj = runlog::read_all(&json).unwrap();
    assert!(c.records.iter().zip(&cj.records).all(|(x, y)| same(&x.event, &y.event)));
}

#[test]
fn new_names_make_a_new_table_and_odd_steps_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let mut rng = StdRng::seed_from_u64(11);
    let mut evs = start();
    for s in 0..3000u64 {
        let mut m = Metrics::new();
        for k in 0..rng.random_range(0..12) {
            let v = match rng.random_range(0..5) {
                0 => f64::from_bits(rng.random::<u64>()),
                1 => f64::INFINITY,
                _ => rng.random::<f64>(),
            };
            m.insert(format!("m{}", k * 3 + rng.random_range(0..3)), v);
        }
        let phase = ["a", "b", "ü 名", ""][rng.random_range(0..4)];
        let step = if s % 500 == 0 { u64::MAX - s } else { s };
        evs.push(Event::Step { step, phase: phase.into(), t: rng.random::<f64>() * 2e9, metrics: m });
    }
    write(&path, &evs);
    let c = runlog::read_all(&path).unwrap();
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    assert_eq!(c.records.len(), evs.len());
    for (r, e) in c.records.iter().zip(&evs) {
        // Non-finite values read as NaN, as JSON's null does.
        let mut want = e.clone();
        if let Event::Step { metrics, .. } = &mut want {
            metrics.values_mut().filter(|v| !v.is_finite()).for_each(|v| *v = f64::NAN);
        }
        assert!(same(&r.event, &want), "{:?} != {want:?}", r.event);
    }
}

/// (start, end) of each *step* record, and of each keys record (not an event, so not a
/// `Record`): found by walking the frames.
fn frames(bytes: &[u8]) -> Vec<(usize, usize, u8)> {
    let mut out = Vec::new();
    let mut at = 16;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, at + 8 + len, bytes[at + 8]));
        at += 8 + len;
    }
    out
}

#[test]
fn damage_to_a_step_record_loses_that_record_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let evs = demo_events(400);
    write(&path, &evs);
    let clean = std::fs::read(&path).unwrap();
    let fr = frames(&clean);
    let binary: Vec<usize> = (0..fr.len()).filter(|&i| fr[i].2 == runlog::STEP_TAG).collect();
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..200 {
        let i = binary[rng.random_range(1..binary.len() - 1)];
        let (s, e, _) = fr[i];
        let mut bytes = clean.clone();
        let at = rng.random_range(s..e);
        bytes[at] ^= 1 << rng.random_range(0..8);
        let c = runlog::read_bytes(&bytes).unwrap();
        assert_eq!(c.records.len(), evs.len() - 1, "flip at {at} in record {s}..{e}: {:?}", c.problems);
        assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
        assert_eq!(c.problems[0].offset, s as u64);
        assert!(c.records.iter().all(|r| r.offset != s as u64));
    }
    // Garbage between two binary records: skipped, reported once, the rest read.
    let (s, _, _) = fr[binary[50]];
    let mut bytes = clean.clone();
    bytes.splice(s..s, [1u8, 0, 0, 0, 9, 9, 9, 9, 1, 0x01, 0x01].iter().copied());
    let c = runlog::read_bytes(&bytes).unwrap();
    assert_eq!(c.records.len(), evs.len());
    assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
}

#[test]
fn a_lost_keys_event_costs_only_the_steps_until_it_is_recorded_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    // More than REKEY_EVERY bytes of steps, so the table is recorded a second time.
    let n = runlog::REKEY_EVERY / 60;
    let evs = demo_events(n);
    write(&path, &evs);
    let mut bytes = std::fs::read(&path).unwrap();
    let fr = frames(&bytes);
    let keys: Vec<usize> = (0..fr.len())
        .filter(|&i| {
            bytes[fr[i].0 + 8] == b'{' && {
                let (s, e, _) = fr[i];
                bytes[s + 8..e].starts_with(br#"{"type":"keys""#)
            }
        })
        .collect();
    assert!(keys.len() >= 2, "the table was recorded {} times", keys.len());
    // Damage the first keys event: the steps up to the second are unreadable (each
    // reported as missing its keys), those after it read again.
    let (s, e, _) = fr[keys[0]];
    bytes[(s + e) / 2] ^= 0x20;
    let c = runlog::read_bytes(&bytes).unwrap();
    let missing = c.problems.iter().filter(|p| p.kind == ProblemKind::MissingKeys).count();
    let lost_steps = (keys[0] + 1..keys[1]).filter(|&i| fr[i].2 == runlog::STEP_TAG).count();
    assert_eq!(missing, lost_steps);
    assert!(c.problems.iter().any(|p| p.kind == ProblemKind::CrcMismatch && p.offset == s as u64));
    let last = evs.last().unwrap();
    assert!(same(&c.records.last().unwrap().event, last));
    assert_eq!(c.records.len(), evs.len() - lost_steps);
}

#[test]
fn torn_tails_and_resume_after_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let evs = demo_events(300);
    write(&path, &evs);
    let full = std::fs::read(&path).unwrap();
    let fr = frames(&full);
    let mut rng = StdRng::seed_from_u64(9);
    for _ in 0..100 {
        let cut = rng.random_range(17..full.len());
        let c = runlog::read_bytes(&full[..cut]).unwrap();
        let whole = fr
            .iter()
            .filter(|(_, e, _)| *e <= cut)
            .filter(|(s, e, _)| !full[*s + 8..*e].starts_with(br#"{"type":"keys""#))
            .count();
        assert_eq!(c.records.len(), whole, "cut {cut}");
        let torn = fr.iter().any(|(s, e, _)| *s < cut && cut < *e);
        assert_eq!(c.problems.len(), usize::from(torn), "cut {cut}: {:?}", c.problems);
        if torn {
            assert_eq!(c.problems[0].kind, ProblemKind::TornTail);
        }
    }
    // Cut mid-record, resume: the torn tail goes, a new table is recorded before the
    // first new step (whose names differ), and everything reads.
    let (s, e, _) = fr[fr.len() / 2];
    std::fs::write(&path, &full[..(s + e) / 2]).unwrap();
    let (mut w, dropped) = Writer::open_append(&path).unwrap();
    assert_eq!(dropped.unwrap().offset, s as u64);
    let before = runlog::read_all(&path).unwrap().records.len();
    let mut more = Vec::new();
    for k in 0..50u64 {
        let mut m = demo_metrics(k);
        m.insert("loss/aux".into(), k as f64 * 0.5);
        more.push(Event::Step { step: 1000 + k, phase: "cool".into(), t: 5.0 + k as f64, metrics: m });
    }
    for ev in &more {
        w.append(ev).unwrap();
    }
    drop(w);
    let c = runlog::read_all(&path).unwrap();
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    assert_eq!(c.records.len(), before + more.len());
    assert!(c.records[before..].iter().zip(&more).all(|(r, e)| same(&r.event, e)));
}

#[test]
fn old_json_logs_stay_json_and_mixed_logs_read() {
    let dir = tempfile::tempdir().unwrap();
    // A schema 1.3 log (as older builds wrote it): resuming it appends JSON steps.
    let path = dir.path().join("old.log");
    let mut w = Writer::create(&path).unwrap();
    w.set_compact_steps(false);
    w.append(&step(1, "main")).unwrap();
    drop(w);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[12..16].copy_from_slice(&3u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let (mut w, _) = Writer::open_append(&path).unwrap();
    assert!(!w.set_compact_steps(true), "a 1.3 log must not get binary records");
    w.append(&step(2, "main")).unwrap();
    drop(w);
    let bytes = std::fs::read(&path).unwrap();
    assert!(frames(&bytes).iter().all(|f| f.2 == b'{'));
    let c = runlog::read_all(&path).unwrap();
    assert_eq!((c.schema_minor, c.records.len(), c.problems.len()), (3, 2, 0));

    // A 1.4 log with JSON and binary step records interleaved.
    let path = dir.path().join("mixed.log");
    let mut w = Writer::create(&path).unwrap();
    let evs: Vec<Event> = (0..200).map(|s| step(s, "main")).collect();
    for (i, e) in evs.iter().enumerate() {
        w.set_compact_steps(i % 3 != 0);
        w.append(e).unwrap();
    }
    drop(w);
    let c = runlog::read_all(&path).unwrap();
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    assert!(c.records.iter().zip(&evs).all(|(r, e)| same(&r.event, e)));
    let kinds: std::collections::BTreeSet<u8> = frames(&std::fs::read(&path).unwrap()).iter().map(|f| f.2).collect();
    assert!(kinds.contains(&b'{') && kinds.contains(&runlog::STEP_TAG));
}

#[test]
fn readers_that_start_mid_file_get_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let evs = demo_events(500);
    write(&path, &evs);
    let all = runlog::read_all(&path).unwrap();
    let mid = all.records[300].offset;
    // Tail from an offset finds the tables before it.
    let mut tail = Tail::from_offset(&path, mid);
    let got = tail.poll().unwrap();
    assert!(tail.take_problems().is_empty());
    assert_eq!(got.len(), all.records.len() - 300);
    assert!(got.iter().zip(&all.records[300..]).all(|(a, b)| same(&a.event, &b.event)));
    // A Reader at an offset: with the tables, every step; without, each step is a
    // missing_keys problem (never a wrong name).
    let mut f = std::fs::File::open(&path).unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(mid)).unwrap();
    let tables = runlog::key_tables_before(&path, mid).unwrap();
    let c = Reader::at(f, mid, (1, 4)).with_keys(&tables).into_contents();
    assert!(c.problems.is_empty());
    assert_eq!(c.records.len(), all.records.len() - 300);
    let mut f = std::fs::File::open(&path).unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(mid)).unwrap();
    let c = Reader::at(f, mid, (1, 4)).into_contents();
    assert!(c.problems.iter().all(|p| p.kind == ProblemKind::MissingKeys));
    assert!(c.records.iter().all(|r| !matches!(r.event, Event::Step { .. })));
    // In memory, the same tables.
    let bytes = std::fs::read(&path).unwrap();
    let t2 = runlog::key_tables_in(&bytes, mid);
    assert!(!t2.is_empty());
}
