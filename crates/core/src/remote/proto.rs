//! The stream protocol: one JSON object per line (docs/REMOTE.md).
//!
//! `phasetop stream` → local side (its stdout):
//! - `{"hello":{...}}` first: protocol version, the run's `run.json` and config, the log's
//!   length and the offset the stream starts from, whether the host is live.
//! - `E OFFSET NEXT PAYLOAD`: an event: the source offset of its record, the offset just
//!   past it (where a resumed stream continues), and the record's payload exactly as in
//!   the log (compact JSON, one line), so the mirror holds the same bytes — re-encoding
//!   would move floats by an ulp. Not JSON around it, so the payload is never re-parsed
//!   to find its end.
//! - `{"hb":{"at":NEXT,"live":BOOL,"len":LOG_LEN}}`: a heartbeat when nothing else was
//!   sent for [`HEARTBEAT`]; `at` never passes a step held back for decimation.
//! - `{"reply":{"id":N,"ok":..,"step":..,"message":..}}`: the answer to a command.
//! - `{"console":{"file":"job.log","at":A,"next":B,"text":"..."}}`: what a console file
//!   gained, from its byte `A` up to `B` (only after the local side asked; see
//!   [`super::console`]).
//! - `{"error":"..."}`: the stream cannot start (no such run, unreadable log); it exits.
//!
//! Local side → `phasetop stream` (its stdin): `{"id":N,"cmd":BODY}`, BODY being what
//! `ctl` sends to the control socket (`{"cmd":"pause"}`, `{"cmd":"status"}`, …), or
//! `{"cmd":"console","from":{FILE:OFFSET}}`, which the stream answers itself.

use crate::control::Reply;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Version of this protocol; a stream refuses a hello it does not speak.
pub const PROTO: u32 = 1;
/// The stream sends a heartbeat when it has been silent this long.
pub const HEARTBEAT: Duration = Duration::from_secs(3);
/// The local side drops a link silent for this long and reconnects.
pub const LINK_TIMEOUT: Duration = Duration::from_secs(12);
/// Step events a second the stream keeps by default (see [`super::stream::Decimator`]):
/// the host flushes its log every 250 ms, so a live viewer sees no finer grain anyway.
pub const DEFAULT_STEPS_PER_SEC: f64 = 4.0;
/// The longest frame line the local side accepts (an event is at most 16 MiB of JSON).
pub const MAX_FRAME: usize = (16 << 20) + 4096;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Hello {
    pub proto: u32,
    /// The run directory as the remote side opened it.
    pub run: String,
    /// `run.json`, as JSON (absent for an imported run without one).
    #[serde(default)]
    pub meta: Option<serde_json::Value>,
    /// `config.toml`'s text.
    #[serde(default)]
    pub config: Option<String>,
    /// The log's length when the stream started.
    pub len: u64,
    /// The offset the first event frame starts at.
    pub from: u64,
    /// Whether a host answers on the run's control socket.
    pub live: bool,
    /// The decimation in force (0: every step).
    pub steps_per_sec: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Heartbeat {
    pub at: u64,
    pub live: bool,
    pub len: u64,
}

/// Console output: `text` is the file's bytes `at..next` (as UTF-8; see
/// [`super::console`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConsoleChunk {
    pub file: String,
    pub at: u64,
    pub next: u64,
    pub text: String,
}

/// A line from the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Hello(Hello),
    /// `payload`: the event's JSON as in the log (no newline in it).
    Event {
        payload: Vec<u8>,
        offset: u64,
        at: u64,
    },
    Heartbeat(Heartbeat),
    Reply {
        id: u64,
        reply: Reply,
    },
    Console(ConsoleChunk),
    Error(String),
}

#[derive(Serialize, Deserialize)]
struct ReplyFrame {
    id: u64,
    #[serde(flatten)]
    reply: Reply,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Wire {
    Hello(Hello),
    Hb(Heartbeat),
    Reply(ReplyFrame),
    Console(ConsoleChunk),
    Error(String),
}

impl Frame {
    /// The frame as one line, newline included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = match self {
            Frame::Hello(h) => serde_json::to_vec(&Wire::Hello(h.clone())),
            Frame::Event { payload, offset, at } => {
                let mut line = format!("E {offset} {at} ").into_bytes();
                line.extend_from_slice(payload);
                Ok(line)
            }
            Frame::Heartbeat(h) => serde_json::to_vec(&Wire::Hb(h.clone())),
            Frame::Reply { id, reply } => {
                serde_json::to_vec(&Wire::Reply(ReplyFrame { id: *id, reply: reply.clone() }))
            }
            Frame::Console(c) => serde_json::to_vec(&Wire::Console(c.clone())),
            Frame::Error(e) => serde_json::to_vec(&Wire::Error(e.clone())),
        }
        .expect("frames serialise");
        out.push(b'\n');
        out
    }

    /// Reads one line (without its newline); an error says what is wrong with it.
    pub fn decode(line: &[u8]) -> Result<Frame, String> {
        if let Some(rest) = line.strip_prefix(b"E ") {
            let mut parts = rest.splitn(3, |&b| b == b' ');
            let mut num = || -> Option<u64> { std::str::from_utf8(parts.next()?).ok()?.parse().ok() };
            let (Some(offset), Some(at)) = (num(), num()) else { return Err("bad event frame header".into()) };
            let payload = parts.next().ok_or("event frame without a payload")?;
            // The mirror parses the payload as an event: the same depth guard first.
            crate::jsonline::check_depth(payload).map_err(|e| format!("bad event frame: {e}"))?;
            let payload = payload.to_vec();
            return Ok(Frame::Event { payload, offset, at });
        }
        let w: Wire = crate::jsonline::from_slice(line).map_err(|e| format!("bad frame: {e}"))?;
        Ok(match w {
            Wire::Hello(h) => Frame::Hello(h),
            Wire::Hb(h) => Frame::Heartbeat(h),
            Wire::Reply(r) => Frame::Reply { id: r.id, reply: r.reply },
            Wire::Console(c) => Frame::Console(c),
            Wire::Error(e) => Frame::Error(e),
        })
    }
}

/// A command request on the stream's stdin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CommandRequest {
    pub id: u64,
    pub cmd: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    /// Issue 24 #1: the mirror refuses a deep frame, and a deep event payload, before
    /// parsing either.
    #[test]
    fn deep_frames_are_refused_before_parsing() {
        let deep = format!("{{\"hb\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(Frame::decode(deep.as_bytes()).unwrap_err().contains("nested deeper than 32"));
        let event = format!("E 10 20 {}", "{\"a\":".repeat(200));
        assert!(Frame::decode(event.as_bytes()).unwrap_err().contains("nested deeper than 32"));
    }

    #[test]
    fn frames_round_trip() {
        let frames = [
            Frame::Hello(Hello {
                proto: PROTO,
                run: "runs/a".into(),
                meta: Some(serde_json::json!({"run_id": "a"})),
                config: Some("x = 1\n".into()),
                len: 100,
                from: 16,
                live: true,
                steps_per_sec: 4.0,
            }),
            Frame::Event {
                payload: serde_json::to_vec(&Event::Log {
                    step: 3,
                    level: crate::event::LogLevel::Info,
                    message: "hi\nthere".into(),
                })
                .unwrap(),
                offset: 16,
                at: 80,
            },
            Frame::Heartbeat(Heartbeat { at: 80, live: false, len: 90 }),
            Frame::Reply { id: 7, reply: Reply { ok: true, step: 5, message: "paused".into() } },
            Frame::Console(ConsoleChunk { file: "job.log".into(), at: 10, next: 25, text: "50%\r100% ✓\n".into() }),
            Frame::Error("no run".into()),
        ];
        for f in frames {
            let line = f.encode();
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "one line: {line:?}");
            assert_eq!(Frame::decode(&line[..line.len() - 1]).unwrap(), f);
        }
        assert!(Frame::decode(b"{\"nope\":1}").is_err());
        assert!(Frame::decode(b"\xff").is_err());
    }
}
