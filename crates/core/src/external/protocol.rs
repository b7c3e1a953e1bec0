//! The job protocol: what a client (python/phasetop, or anything that speaks docs/CLIENT.md)
//! sends on the run's `control.sock`, one JSON object per line, beside the operators'
//! control requests (`{"cmd": …}`, `control`). Job frames carry `"type"`.
//!
//! Frames that get a reply: `hello` → `welcome`, `sync` → `control`, `finish` → `ok`.
//! Frames that get none (so that sending them never waits on the host): `log`, `probe`,
//! `checkpoint`, `summary`, `config`, `text`; their problems come back in the next `control`'s `errors`. A frame that
//! cannot be read at all (not JSON, no known `type`, too long) is answered with
//! `{"type":"error"}` and counted.

use crate::event::Metrics;
use serde::{Deserialize, Serialize};

/// Version of the job protocol; `hello` carries the client's.
/// 1: answers are applied at once. 2: a sync may say `applied` (docs/CLIENT.md).
pub const PROTOCOL: u32 = 2;
/// Longest frame accepted (a log batch of a few thousand points fits).
pub const MAX_FRAME: usize = 1 << 20;
/// Longest metric or layer name.
pub const MAX_NAME: usize = 200;
/// Largest step a frame may carry: 2^53, the largest whole number every JSON reader
/// (Python's float, JavaScript) holds exactly; beyond it a step is refused like any other
/// bad frame (issue 24 #5: a step of 2^63 switched phases and broke `export`).
pub const MAX_STEP: u64 = 1 << 53;

/// `Err` (the reason) when `step` is beyond `MAX_STEP`; `what` names the frame or field.
pub fn check_step(what: &str, step: u64) -> Result<(), String> {
    if step > MAX_STEP {
        return Err(format!("{what}: step {step} is larger than the largest step accepted, 2^53 ({MAX_STEP})"));
    }
    Ok(())
}

impl JobFrame {
    /// Every step the frame carries is within `MAX_STEP` (a `log` frame's points are
    /// checked one by one, in `point`).
    fn check_steps(&self) -> Result<(), String> {
        match self {
            JobFrame::Sync { step, applied } => {
                check_step("sync", *step)?;
                applied.map_or(Ok(()), |a| check_step("sync's \"applied\"", a))
            }
            JobFrame::Probe { step, .. } => check_step("probe", *step),
            JobFrame::Checkpoint { step, .. } => check_step("checkpoint", *step),
            JobFrame::Text { step, .. } => step.map_or(Ok(()), |s| check_step("text", s)),
            JobFrame::Finish { step, lost_at, .. } => {
                step.map_or(Ok(()), |s| check_step("finish", s))?;
                lost_at.map_or(Ok(()), |s| check_step("finish's \"lost_at\"", s))
            }
            JobFrame::Summary { step, .. } => step.map_or(Ok(()), |s| check_step("summary", s)),
            JobFrame::Hello { rejoin, .. } => rejoin.map_or(Ok(()), |s| check_step("hello's \"rejoin\"", s)),
            JobFrame::Log { .. } | JobFrame::Config { .. } => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum JobFrame {
    Hello {
        #[serde(default = "one")]
        protocol: u32,
        #[serde(default)]
        rank: u32,
        #[serde(default = "one")]
        world_size: u32,
        #[serde(default)]
        pid: u32,
        /// The script's own config (`phasetop.init(config=…)`), recorded once.
        #[serde(default)]
        config: serde_json::Value,
        #[serde(default)]
        client: String,
        /// `init(tags=…, notes=…, group=…)`, recorded with the config (rank 0's).
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        notes: String,
        #[serde(default)]
        group: Option<String>,
        /// Rank 0 connecting again after it lost the host (a timeout: the host was
        /// stopped or starved): the last step the host had recorded, as the job saw it.
        #[serde(default)]
        rejoin: Option<u64>,
    },
    /// `run.summary[key] = value`: final figures (numbers, strings, booleans).
    Summary {
        #[serde(default)]
        step: Option<u64>,
        values: serde_json::Map<String, serde_json::Value>,
    },
    /// `run.config.update({…})` (SummaryWriter's `add_hparams`): keys merged into the
    /// job's config; the whole run info is recorded again (the last `run_info` wins).
    Config {
        values: serde_json::Map<String, serde_json::Value>,
    },
    /// `run.text(tag, text)` (SummaryWriter's `add_text`): a line of the job's own text,
    /// recorded as a `log` event at its step.
    Text {
        #[serde(default)]
        step: Option<u64>,
        tag: String,
        text: String,
    },
    Log {
        points: Vec<serde_json::Value>,
        /// Points the client dropped since its last frame (its buffer was full).
        #[serde(default)]
        dropped: u64,
    },
    Sync {
        step: u64,
        /// Protocol 2: the step at which the job applied the phase change it was last given.
        #[serde(default)]
        applied: Option<u64>,
    },
    Probe {
        step: u64,
        layer: String,
        metrics: serde_json::Map<String, serde_json::Value>,
    },
    Checkpoint {
        step: u64,
        path: String,
    },
    Finish {
        #[serde(default)]
        step: Option<u64>,
        #[serde(default)]
        status: Option<String>,
        #[serde(default)]
        message: String,
        /// The last step the host had recorded when the client lost it (a timeout): the
        /// job ran on from there unrecorded, to `step`.
        #[serde(default)]
        lost_at: Option<u64>,
    },
}

fn one() -> u32 {
    1
}

/// The answer to `sync`: the same on every rank once rank 0 has broadcast it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Control {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub step: u64,
    pub phase: String,
    pub phase_changed: bool,
    /// The phase's settings (its free keys in the config).
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// `ctl set KEY=VALUE` since the last sync.
    pub set: serde_json::Map<String, serde_json::Value>,
    pub should_stop: bool,
    pub paused: bool,
    /// The operator asked for a checkpoint (`ctl checkpoint`).
    pub checkpoint: bool,
    /// Problems with frames since the last sync (bad metric names or values, …).
    pub errors: Vec<String>,
    /// Points the client reported dropped over the run.
    pub dropped: u64,
    /// Where the plan next acts by itself (the phase's `steps` end, `max_steps`); absent
    /// while a switch is in flight or when the plan has neither.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boundary: Option<u64>,
}

/// One log point as validated: its step, the rank it came from, metric → value.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub step: u64,
    pub rank: u32,
    /// When the job logged it, by its own clock (unix seconds), if it said.
    pub t: Option<f64>,
    pub metrics: Metrics,
}

/// Whether the log can hold `name` as a metric (or layer) name.
pub fn check_metric_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a metric name must not be empty".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "metric name \"{}…\" is longer than {MAX_NAME} bytes",
            &name[..name.floor_char_boundary(40)]
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("metric name {name:?} holds {c:?}: names have no spaces or control characters"));
    }
    Ok(())
}

/// A metric value: a JSON number, or `null` for a non-finite one (NaN is not JSON).
fn metric_value(name: &str, v: &serde_json::Value) -> Result<f64, String> {
    match v {
        serde_json::Value::Number(n) => n.as_f64().ok_or_else(|| format!("metric \"{name}\": {n} is not a float")),
        serde_json::Value::Null => Ok(f64::NAN),
        other => Err(format!("metric \"{name}\": {other} is not a number")),
    }
}

/// Validated metrics; invalid entries are left out and described in `errors`.
pub fn metrics(map: &serde_json::Map<String, serde_json::Value>, at: &str, errors: &mut Vec<String>) -> Metrics {
    let mut out = Metrics::new();
    for (k, v) in map {
        match check_metric_name(k).and_then(|()| metric_value(k, v)) {
            Ok(x) => {
                out.insert(k.clone(), x);
            }
            Err(e) => errors.push(format!("{at}: {e}")),
        }
    }
    out
}

/// One point of a `log` frame: `{"step": N, "metrics": {…}, "rank": R?}`.
pub fn point(v: &serde_json::Value, errors: &mut Vec<String>) -> Option<Point> {
    let Some(obj) = v.as_object() else {
        errors.push(format!("log point {v} is not an object"));
        return None;
    };
    let Some(step) = obj.get("step").and_then(|s| s.as_u64()) else {
        errors.push(format!("log point without a whole, non-negative step: {}", short(v)));
        return None;
    };
    if let Err(e) = check_step("log point", step) {
        errors.push(e);
        return None;
    }
    let rank = match obj.get("rank") {
        None => 0,
        Some(r) => match r.as_u64().and_then(|r| u32::try_from(r).ok()) {
            Some(r) => r,
            None => {
                errors.push(format!("log point at step {step}: rank {r} is not a whole number"));
                return None;
            }
        },
    };
    let Some(m) = obj.get("metrics").and_then(|m| m.as_object()) else {
        errors.push(format!("log point at step {step} has no \"metrics\" object"));
        return None;
    };
    if let Some(k) = obj.keys().find(|k| !matches!(k.as_str(), "step" | "metrics" | "rank" | "t")) {
        errors.push(format!("log point at step {step}: unknown field \"{k}\""));
    }
    // The job's own clock (unix seconds) when it logged the point, for its step rate.
    let t = obj.get("t").and_then(|t| t.as_f64()).filter(|t| t.is_finite());
    Some(Point { step, rank, t, metrics: metrics(m, &format!("step {step}"), errors) })
}

fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.len() > 80 { format!("{}…", &s[..s.floor_char_boundary(80)]) } else { s }
}

/// What a line on the socket is.
#[derive(Debug)]
pub enum Frame {
    Control(serde_json::Value),
    Job(Box<JobFrame>),
}

/// Parses one line; `Err` is the reason it was rejected.
pub fn parse(line: &[u8]) -> Result<Frame, String> {
    let text = std::str::from_utf8(line)
        .map_err(|e| format!("malformed frame: not UTF-8 text (invalid byte at offset {})", e.valid_up_to()))?;
    let value: serde_json::Value =
        crate::jsonline::from_slice(text.trim().as_bytes()).map_err(|e| format!("malformed frame: {e}"))?;
    if value.get("cmd").is_some() {
        return Ok(Frame::Control(value));
    }
    match value.get("type").and_then(|t| t.as_str()) {
        Some(_) => {
            let frame: JobFrame = serde_json::from_value(value).map_err(|e| format!("invalid frame: {e}"))?;
            frame.check_steps().map_err(|e| format!("invalid frame: {e}"))?;
            Ok(Frame::Job(Box::new(frame)))
        }
        None => Err("malformed frame: an object with \"type\" (a job frame) or \"cmd\" (a control request)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_told_apart_and_bad_ones_say_why() {
        assert!(matches!(parse(br#"{"cmd":"status"}"#), Ok(Frame::Control(_))));
        assert!(
            matches!(parse(br#"{"type":"sync","step":3}"#), Ok(Frame::Job(f)) if matches!(*f, JobFrame::Sync { step: 3, applied: None }))
        );
        assert!(parse(b"{not json").unwrap_err().starts_with("malformed frame"));
        assert!(parse(br#"{"type":"explode"}"#).unwrap_err().contains("unknown variant"));
        assert!(parse(b"\xff\xfe").unwrap_err().contains("not UTF-8"));
        // Refused before any recursion (issue 24 #1).
        let deep = format!(r#"{{"type":"log","step":1,"metrics":{}1{}}}"#, "[".repeat(200), "]".repeat(200));
        assert!(parse(deep.as_bytes()).unwrap_err().contains("nested deeper than 32"));
        let mut errors = Vec::new();
        let v = serde_json::json!({"step": 4, "metrics": {"loss": 0.5, "bad name": 1, "acc": "high", "nan": null}});
        let p = point(&v, &mut errors).unwrap();
        assert_eq!(p.metrics.len(), 2);
        assert!(p.metrics["nan"].is_nan());
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("\"acc\": \"high\" is not a number")), "{errors:?}");
        assert!(point(&serde_json::json!({"step": -1, "metrics": {}}), &mut errors).is_none());
    }

    #[test]
    fn steps_beyond_2_pow_53_are_refused_in_every_frame() {
        let big = 1u64 << 63;
        for f in [
            format!(r#"{{"type":"sync","step":{big}}}"#),
            format!(r#"{{"type":"sync","step":3,"applied":{big}}}"#),
            format!(r#"{{"type":"probe","step":{big},"layer":"l","metrics":{{}}}}"#),
            format!(r#"{{"type":"checkpoint","step":{big},"path":"c.pt"}}"#),
            format!(r#"{{"type":"finish","step":{big}}}"#),
        ] {
            let e = parse(f.as_bytes()).unwrap_err();
            assert!(e.contains("larger than the largest step accepted, 2^53"), "{f}: {e}");
        }
        assert!(parse(format!(r#"{{"type":"sync","step":{MAX_STEP}}}"#).as_bytes()).is_ok());
        let mut errors = Vec::new();
        assert!(point(&serde_json::json!({"step": big, "metrics": {"x": 1}}), &mut errors).is_none());
        assert!(errors[0].contains("log point: step 9223372036854775808 is larger"), "{errors:?}");
    }
}
