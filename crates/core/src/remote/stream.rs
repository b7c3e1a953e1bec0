//! `phasetop stream RUN`: the remote end of a remote attach. Reads the run's log from an
//! offset (backfill, then the live tail), decimates step events, writes frames to stdout,
//! and answers command requests from stdin through the run's control socket; once asked,
//! it also follows the run's console files (`super::console`). It holds no more than one
//! record at a time and never writes to the run directory.

use super::console::{self, ConsoleTail};
use super::proto::{CommandRequest, Frame, HEARTBEAT, Heartbeat, Hello, PROTO};
use crate::control::{self, Reply};
use crate::event::Event;
use crate::rundir::RunDir;
use crate::runlog::{HEADER_LEN, Tail};
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the log is looked at for new records once caught up. The host flushes every
/// 250 ms; a stat a tenth of a second is all the stream costs while the run trains.
const POLL: Duration = Duration::from_millis(100);

/// Thins step events to at most `steps_per_sec` a second of the run's recorded time (the
/// `t` of each step), keeping every other event. Also kept: the first step, a step whose
/// phase differs from the last kept one, and a step with a non-finite metric (a
/// divergence must show). The latest skipped step is held back and sent when the run
/// goes quiet (no newer step for the same interval of wall time) and before a phase
/// change, a plan change, a (re)start or the run's end, so the viewer's current step is
/// the run's own whenever it stops moving.
pub struct Decimator {
    /// Seconds between kept steps; 0 keeps every step.
    gap: f64,
    last_kept_t: Option<f64>,
    last_phase: Option<String>,
    /// The latest skipped step: (event, offset, at), and when it was seen.
    held: Option<(Event, u64, u64, Instant)>,
}

impl Decimator {
    pub fn new(steps_per_sec: f64) -> Decimator {
        let gap = if steps_per_sec > 0.0 && steps_per_sec.is_finite() { 1.0 / steps_per_sec } else { 0.0 };
        Decimator { gap, last_kept_t: None, last_phase: None, held: None }
    }

    /// The events to send for the record `(event, offset, at)`, in order.
    pub fn offer(&mut self, event: Event, offset: u64, at: u64, now: Instant) -> Vec<(Event, u64, u64)> {
        match &event {
            Event::Step { t, phase, metrics, .. } => {
                let keep = self.gap == 0.0
                    || self.last_kept_t.is_none_or(|last| *t - last >= self.gap || *t < last)
                    || self.last_phase.as_deref() != Some(phase.as_str())
                    || metrics.values().any(|v| !v.is_finite());
                if keep {
                    self.held = None;
                    self.last_kept_t = Some(*t);
                    self.last_phase = Some(phase.clone());
                    vec![(event, offset, at)]
                } else {
                    self.held = Some((event, offset, at, now));
                    Vec::new()
                }
            }
            Event::PhaseChanged { .. }
            | Event::PlanChanged { .. }
            | Event::RunStarted { .. }
            | Event::RunEnded { .. } => {
                let mut out: Vec<_> = self.take_held().into_iter().collect();
                out.push((event, offset, at));
                out
            }
            _ => vec![(event, offset, at)],
        }
    }

    /// The held step, once no newer step has come for the decimation interval.
    pub fn idle(&mut self, now: Instant) -> Option<(Event, u64, u64)> {
        let (.., seen) = self.held.as_ref()?;
        if now.duration_since(*seen).as_secs_f64() >= self.gap { self.take_held() } else { None }
    }

    fn take_held(&mut self) -> Option<(Event, u64, u64)> {
        let (e, o, at, _) = self.held.take()?;
        if let Event::Step { t, phase, .. } = &e {
            self.last_kept_t = Some(*t);
            self.last_phase = Some(phase.clone());
        }
        Some((e, o, at))
    }

    /// Where a resumed stream must start so as not to lose the held step.
    pub fn held_offset(&self) -> Option<u64> {
        self.held.as_ref().map(|(_, o, ..)| *o)
    }
}

type Out = Arc<Mutex<dyn Write + Send>>;

/// The payload of the record at `offset` as the log holds it (the bytes the mirror
/// writes back), or `event` encoded again where that cannot be read as one line or is
/// not JSON (a compact binary step record, schema 1.4): the mirror's log is all JSON.
fn payload(log: &mut std::fs::File, event: &Event, offset: u64) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; 8];
    if log.read_exact_at(&mut head, offset).is_ok() {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len <= crate::runlog::MAX_PAYLOAD {
            let mut buf = vec![0u8; len];
            if log.read_exact_at(&mut buf, offset + 8).is_ok()
                && crc32c::crc32c(&buf) == u32::from_le_bytes([head[4], head[5], head[6], head[7]])
                && buf.first() == Some(&b'{')
                && !buf.contains(&b'\n')
            {
                return buf;
            }
        }
    }
    serde_json::to_vec(event).unwrap_or_default()
}

/// Writes one frame and flushes; false once the link is gone.
fn send(out: &Out, frames: &[Frame]) -> bool {
    let Ok(mut w) = out.lock() else { return false };
    for f in frames {
        if w.write_all(&f.encode()).is_err() {
            return false;
        }
    }
    w.flush().is_ok()
}

/// Serves one stream until the link closes (stdin at EOF or stdout gone). Errors that
/// stop the stream before it starts are sent as an `error` frame and returned.
pub fn serve(
    run: &Path,
    from: Option<u64>,
    steps_per_sec: f64,
    input: impl BufRead + Send + 'static,
    out: Out,
) -> anyhow::Result<()> {
    let fail = |msg: String| -> anyhow::Result<()> {
        send(&out, &[Frame::Error(msg.clone())]);
        Err(crate::error::UsageError(msg).into())
    };
    let dir = match RunDir::open(run) {
        Ok(d) => d,
        Err(e) => return fail(format!("{e:#}")),
    };
    let len = std::fs::metadata(dir.log()).map(|m| m.len()).unwrap_or(0);
    let from = from.unwrap_or(HEADER_LEN as u64).max(HEADER_LEN as u64);
    if from > len {
        return fail(format!("--from {from} is past the end of {} ({len} bytes)", dir.log().display()));
    }
    if !(steps_per_sec >= 0.0 && steps_per_sec.is_finite()) {
        return fail(format!("--steps-per-sec must be a number ≥ 0, got {steps_per_sec}"));
    }
    let meta = std::fs::read(dir.path.join(crate::rundir::META_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let config = std::fs::read_to_string(dir.config()).ok();
    let hello = Hello {
        proto: PROTO,
        run: run.display().to_string(),
        meta,
        config,
        len,
        from,
        live: dir.is_live(),
        steps_per_sec,
    };
    if !send(&out, &[Frame::Hello(hello)]) {
        return Ok(());
    }

    // Commands: one thread reads requests and answers each through the control socket
    // (a command waits for the trainer's next step; the events keep flowing meanwhile).
    let closed = Arc::new(AtomicBool::new(false));
    // The console's tail, once the local side asks for it (`console` frames).
    let console: Arc<Mutex<Option<ConsoleTail>>> = Arc::new(Mutex::new(None));
    {
        let (closed, out, socket) = (closed.clone(), out.clone(), dir.socket());
        let (console, run_path) = (console.clone(), dir.path.clone());
        std::thread::Builder::new().name("stream-commands".into()).spawn(move || {
            let mut input = input;
            let mut line = String::new();
            loop {
                line.clear();
                match input.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if line.trim().is_empty() {
                    continue;
                }
                let (id, reply) = match crate::jsonline::from_slice::<CommandRequest>(line.as_bytes()) {
                    Err(e) => (0, Reply { ok: false, step: 0, message: format!("bad command request: {e}") }),
                    // The console subscription is the stream's own, never the host's.
                    Ok(req) if req.cmd.get("cmd").and_then(|c| c.as_str()) == Some(console::COMMAND) => {
                        if let Ok(mut c) = console.lock() {
                            *c = Some(ConsoleTail::from_request(&run_path, &req.cmd));
                        }
                        (req.id, Reply { ok: true, step: 0, message: "console follows".into() })
                    }
                    Ok(req) => (
                        req.id,
                        control::request(&socket, &req.cmd).unwrap_or_else(|e| Reply {
                            ok: false,
                            step: 0,
                            message: format!("no live run (cannot reach {}): {e}", socket.display()),
                        }),
                    ),
                };
                if !send(&out, &[Frame::Reply { id, reply }]) {
                    break;
                }
            }
            closed.store(true, Ordering::Relaxed);
        })?;
    }

    let mut tail = Tail::from_offset(&dir.log(), from);
    let mut raw = std::fs::File::open(dir.log())?;
    let mut dec = Decimator::new(steps_per_sec);
    let mut last_sent = Instant::now();
    let mut frames: Vec<Frame> = Vec::new();
    while !closed.load(Ordering::Relaxed) {
        let now = Instant::now();
        // Each record goes out with the offset of the next one (`at`), known once the
        // next is read: so a record is handed on one behind.
        let mut prev: Option<(Event, u64)> = None;
        let mut ok = true;
        let n = tail.poll_each(|r| {
            if let Some((e, o)) = prev.take() {
                for (e, o, at) in dec.offer(e, o, r.offset, now) {
                    frames.push(Frame::Event { payload: payload(&mut raw, &e, o), offset: o, at });
                }
            }
            prev = Some((r.event, r.offset));
            // Bounded memory in a long backfill.
            if frames.len() >= 256 {
                ok &= send(&out, &frames);
                frames.clear();
            }
        });
        let n = match n {
            Ok(n) => n,
            Err(e) => return fail(format!("{}: {e}", dir.log().display())),
        };
        if let Some((e, o)) = prev.take() {
            for (e, o, at) in dec.offer(e, o, tail.offset(), now) {
                frames.push(Frame::Event { payload: payload(&mut raw, &e, o), offset: o, at });
            }
        }
        if n == 0
            && let Some((e, o, at)) = dec.idle(now)
        {
            frames.push(Frame::Event { payload: payload(&mut raw, &e, o), offset: o, at });
        }
        let mut console_sent = false;
        if let Ok(mut c) = console.lock()
            && let Some(tail) = c.as_mut()
        {
            for chunk in tail.poll() {
                frames.push(Frame::Console(chunk));
                console_sent = true;
            }
        }
        if frames.is_empty() && last_sent.elapsed() >= HEARTBEAT {
            let at = dec.held_offset().unwrap_or(tail.offset());
            let len = std::fs::metadata(dir.log()).map(|m| m.len()).unwrap_or(0);
            frames.push(Frame::Heartbeat(Heartbeat { at, live: dir.is_live(), len }));
        }
        if !frames.is_empty() {
            ok &= send(&out, &frames);
            frames.clear();
            last_sent = Instant::now();
        }
        if !ok {
            return Ok(());
        }
        if n == 0 && !console_sent {
            std::thread::sleep(POLL);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Metrics;

    fn step(step: u64, t: f64, loss: f64) -> Event {
        let mut metrics = Metrics::new();
        metrics.insert("train_loss".into(), loss);
        Event::Step { step, phase: "main".into(), t, metrics }
    }

    #[test]
    fn steps_are_thinned_by_recorded_time_and_the_rest_kept() {
        let now = Instant::now();
        let mut d = Decimator::new(4.0);
        let mut sent = Vec::new();
        // 1000 steps/s for 2 s, an eval every 100 steps.
        for i in 0..2000u64 {
            let o = 16 + i * 100;
            sent.extend(d.offer(step(i, 100.0 + i as f64 / 1000.0, 1.0), o, o + 100, now));
            if i % 100 == 99 {
                let e = Event::Eval { step: i, split: "val".into(), metrics: Metrics::new() };
                sent.extend(d.offer(e, o + 50, o + 100, now));
            }
        }
        let steps: Vec<u64> = sent
            .iter()
            .filter_map(|(e, ..)| if let Event::Step { step, .. } = e { Some(*step) } else { None })
            .collect();
        let evals = sent.iter().filter(|(e, ..)| matches!(e, Event::Eval { .. })).count();
        assert_eq!(evals, 20, "every non-step event is kept");
        assert!((8..=9).contains(&steps.len()), "4 steps a second over 2 s: {steps:?}");
        assert_eq!(steps[0], 0);
        assert!(steps.windows(2).all(|w| w[1] > w[0]));
        // The latest step is held, and comes out when the run goes quiet.
        assert_eq!(d.held_offset(), Some(16 + 1999 * 100));
        assert!(d.idle(now).is_none());
        let (e, ..) = d.idle(now + Duration::from_millis(300)).expect("the held step goes out when quiet");
        assert!(matches!(e, Event::Step { step: 1999, .. }));
        // A divergence is never thinned away.
        let sent = d.offer(step(2000, 101.9995, f64::NAN), 1, 2, now);
        assert_eq!(sent.len(), 1);
        // Rate 0 keeps everything.
        let mut all = Decimator::new(0.0);
        assert!((0..50).all(|i| all.offer(step(i, 1.0, 1.0), i, i + 1, now).len() == 1));
    }

    #[test]
    fn the_held_step_goes_before_the_end() {
        let now = Instant::now();
        let mut d = Decimator::new(1.0);
        assert_eq!(d.offer(step(0, 0.0, 1.0), 16, 20, now).len(), 1);
        assert!(d.offer(step(1, 0.1, 1.0), 20, 30, now).is_empty());
        let end = Event::RunEnded { step: 1, status: crate::event::RunStatus::Completed, message: String::new() };
        let sent = d.offer(end, 30, 40, now);
        assert!(matches!(sent[0].0, Event::Step { step: 1, .. }));
        assert!(matches!(sent[1].0, Event::RunEnded { .. }));
        assert_eq!(d.held_offset(), None);
    }
}
