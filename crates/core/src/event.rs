//! The shared vocabulary: everything that happens in a run is an [`Event`] in the run
//! log; operator intentions are [`Command`]s, recorded when applied. The dashboard,
//! `inspect`, replay and export are all folds over these types.
//!
//! Metric names are global and unique across event kinds so that one series is keyed by
//! its name alone: step metrics `train_loss`, `train_acc`, `lr`, `grad_norm`,
//! `weight_norm`, `dist_init`, `steps_per_s`, `loss/<term>`, `grad_cos/<term>~<term>`
//! (sorted: [`grad_cos_metric`]); eval metrics `val_loss`, `val_acc`; system samples
//! (an `Eval` with split `system`, about once a second) `sys/cpu_pct`, `sys/rss_mb`,
//! `sys/gpu_*` (`crate::sysmon`).
//!
//! Non-finite metric values (a diverged loss) are written as JSON `null` and read back
//! as NaN, because JSON has no NaN.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Major version of the event schema. Readers reject a newer major version.
pub const SCHEMA_MAJOR: u32 = 1;
/// Minor version: additive changes only (new optional fields, new event kinds).
pub const SCHEMA_MINOR: u32 = 4;

/// Metric name → value. Ordered so that records serialise deterministically.
pub type Metrics = BTreeMap<String, f64>;

/// Metric names, as the trainer's probes record them per layer (`<layer>/<metric>`) and config validation checks them.
pub const PROBE_METRICS: [&str; 5] = ["mean_cos", "diversity", "eff_rank", "entropy", "participation"];
/// The metric of an attention layer (its probe features are attention probabilities).
pub const ATTENTION_METRIC: &str = "attn_entropy";

/// The gradient cosine between loss terms `a` and `b`: `grad_cos/<a>~<b>` with the two
/// names sorted, so a pair has one name whatever order a phase lists its terms in.
pub fn grad_cos_metric(a: &str, b: &str) -> String {
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    format!("grad_cos/{a}~{b}")
}

/// A metric name as it is recorded: a `grad_cos/A~B` pair in sorted order (a rule may
/// name it either way round); every other name unchanged.
pub fn canonical_metric(name: &str) -> String {
    match name.strip_prefix("grad_cos/").and_then(|pair| pair.split_once('~')) {
        Some((a, b)) => grad_cos_metric(a, b),
        None => name.to_string(),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        schema_major: u32,
        schema_minor: u32,
        /// Name of the config (its file stem), for `ls` and headers.
        config_name: String,
        /// The resolved config, as JSON.
        config: serde_json::Value,
        /// The phase plan, in order.
        phases: Vec<String>,
        device: String,
        seed: u64,
        /// Unix time in seconds.
        started_at: f64,
        /// Set when this start continues an earlier one (`train --resume`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resumed_from_step: Option<u64>,
        /// The run this one branched from (`phasetop branch`), by run id (schema 1.2).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent_run: Option<String>,
        /// The parent's checkpoint step this run started from (schema 1.2).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        branch_step: Option<u64>,
    },
    Step {
        step: u64,
        phase: String,
        /// Seconds since the Unix epoch.
        t: f64,
        #[serde(with = "finite_or_null")]
        metrics: Metrics,
    },
    Eval {
        step: u64,
        split: String,
        #[serde(with = "finite_or_null")]
        metrics: Metrics,
    },
    Probe {
        step: u64,
        layer: String,
        #[serde(with = "finite_or_null")]
        metrics: Metrics,
    },
    Signal {
        step: u64,
        detector: String,
        metric: String,
        score: f64,
        message: String,
        /// The firing's figures, so that readers need not parse `message`; each is
        /// optional (older logs have none, and a detector fills only what it has).
        #[serde(flatten)]
        figures: SignalFigures,
    },
    Suggestion {
        step: u64,
        id: u64,
        to_phase: String,
        because: String,
    },
    /// A command as applied (or refused) by the host, between steps.
    Command {
        step: u64,
        t: f64,
        client: String,
        command: Command,
        applied: bool,
        message: String,
    },
    PhaseChanged {
        step: u64,
        #[serde(default)]
        from: Option<String>,
        to: String,
        cause: PhaseCause,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    Checkpoint {
        step: u64,
        path: String,
    },
    /// The operator edited the run's config and applied its future phases (schema 1.1).
    PlanChanged {
        step: u64,
        phases: Vec<String>,
        /// The new resolved config, as JSON.
        config: serde_json::Value,
    },
    Log {
        step: u64,
        level: LogLevel,
        message: String,
    },
    /// What an external job said about itself at `phasetop.init(config=…, tags=…,
    /// notes=…, group=…)`, once (schema 1.3).
    RunInfo {
        step: u64,
        #[serde(default)]
        job_config: serde_json::Value,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        notes: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
    },
    /// A checkpoint deleted by the run's `checkpoint.keep` (schema 1.3): readers no longer
    /// offer it (the events list, `branch --at`).
    CheckpointPruned {
        step: u64,
    },
    /// The run's final figures (`run.summary[key] = value`): a later value of a key
    /// replaces an earlier one (schema 1.3).
    Summary {
        step: u64,
        values: serde_json::Map<String, serde_json::Value>,
    },
    RunEnded {
        step: u64,
        status: RunStatus,
        #[serde(default)]
        message: String,
    },
}

/// A signal's figures beside its message (`since_step`, `before`, `level` in the log's
/// `signal` event). Every field is optional: logs written before they existed have none,
/// and each detector sets only those it has (docs/RUNLOG.md).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SignalFigures {
    /// Where the condition began: a plateau's first flat step, a jump's last step near
    /// its base, a change point's last step before the change, a sustained divergence's
    /// start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_step: Option<u64>,
    /// The metric's level before: a jump's base, a spike's or divergence's running level,
    /// a collapse's starting level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<f64>,
    /// The metric's level at the firing: a plateau's level, the value a jump or spike
    /// reached, a collapse's smoothed value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<f64>,
}

impl SignalFigures {
    /// Figures with the non-finite ones left out (JSON has no NaN or infinity).
    pub fn finite(since_step: Option<u64>, before: Option<f64>, level: Option<f64>) -> SignalFigures {
        SignalFigures { since_step, before: before.filter(|x| x.is_finite()), level: level.filter(|x| x.is_finite()) }
    }
}

impl Event {
    /// The training step this event belongs to, where it has one.
    pub fn step(&self) -> Option<u64> {
        match self {
            Event::RunStarted { .. } => None,
            Event::Step { step, .. }
            | Event::Eval { step, .. }
            | Event::Probe { step, .. }
            | Event::Signal { step, .. }
            | Event::Suggestion { step, .. }
            | Event::Command { step, .. }
            | Event::PhaseChanged { step, .. }
            | Event::Checkpoint { step, .. }
            | Event::PlanChanged { step, .. }
            | Event::Log { step, .. }
            | Event::RunInfo { step, .. }
            | Event::CheckpointPruned { step }
            | Event::Summary { step, .. }
            | Event::RunEnded { step, .. } => Some(*step),
        }
    }
}

/// Operator intent. On the control socket and in the log it is JSON tagged by `cmd`,
/// e.g. `{"cmd":"switch","phase":"main"}`, `{"cmd":"set","key":"lr","value":0.001}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    Switch {
        phase: String,
    },
    Pause,
    Resume,
    Stop,
    Checkpoint,
    Set {
        key: String,
        value: f64,
    },
    /// Accept a pending suggestion (the newest when `id` is absent).
    Accept {
        #[serde(default)]
        id: Option<u64>,
    },
    /// Dismiss a pending suggestion (the newest when `id` is absent).
    Dismiss {
        #[serde(default)]
        id: Option<u64>,
    },
    /// Replace the phases after the current one with those of this config (TOML text);
    /// everything else in it must be unchanged.
    Plan {
        config: String,
    },
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Switch { phase } => write!(f, "switch {phase}"),
            Command::Pause => f.write_str("pause"),
            Command::Resume => f.write_str("resume"),
            Command::Stop => f.write_str("stop"),
            Command::Checkpoint => f.write_str("checkpoint"),
            Command::Set { key, value } => write!(f, "set {key}={value}"),
            Command::Accept { id: Some(id) } => write!(f, "accept {id}"),
            Command::Accept { id: None } => f.write_str("accept"),
            Command::Dismiss { id: Some(id) } => write!(f, "dismiss {id}"),
            Command::Dismiss { id: None } => f.write_str("dismiss"),
            Command::Plan { .. } => f.write_str("plan (edited config)"),
        }
    }
}

/// Why a phase began.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseCause {
    /// The first phase of a run.
    Start,
    /// The previous phase reached its step count.
    Scheduled,
    /// The operator switched by hand.
    Manual,
    /// A signal rule in `auto` mode.
    Rule,
    /// The operator accepted a suggestion.
    Suggestion,
}

impl PhaseCause {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseCause::Start => "start",
            PhaseCause::Scheduled => "scheduled",
            PhaseCause::Manual => "manual",
            PhaseCause::Rule => "rule",
            PhaseCause::Suggestion => "suggestion",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Completed,
    Stopped,
    Failed,
    Diverged,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Stopped => "stopped",
            RunStatus::Failed => "failed",
            RunStatus::Diverged => "diverged",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Info,
    Warn,
    Error,
}

/// Writes non-finite values as `null` and reads `null` back as NaN.
mod finite_or_null {
    use super::Metrics;
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(m: &Metrics, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(m.len()))?;
        for (k, v) in m {
            if v.is_finite() {
                map.serialize_entry(k, v)?;
            } else {
                map.serialize_entry(k, &Option::<f64>::None)?;
            }
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Metrics, D::Error> {
        let raw = BTreeMap::<String, Option<f64>>::deserialize(d)?;
        Ok(raw.into_iter().map(|(k, v)| (k, v.unwrap_or(f64::NAN))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_figures_are_optional_fields_beside_the_message() {
        let ev = Event::Signal {
            step: 900,
            detector: "jump".into(),
            metric: "val_acc".into(),
            score: 0.4,
            message: "jump up: 0.5 at step 850 → 0.9 (50 steps)".into(),
            figures: SignalFigures::finite(Some(850), Some(0.5), Some(f64::NAN)),
        };
        let json = serde_json::to_string(&ev).unwrap();
        // Flat beside the message; a non-finite figure is left out, not written as null.
        assert!(json.contains("\"since_step\":850,\"before\":0.5}"), "{json}");
        assert!(!json.contains("level"), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), ev);
        // A log written before figures existed reads with none.
        let old = r#"{"type":"signal","step":5,"detector":"plateau","metric":"train_loss","score":0.1,"message":"plateau since step 2"}"#;
        let Event::Signal { figures, message, .. } = serde_json::from_str::<Event>(old).unwrap() else {
            panic!("kind")
        };
        assert_eq!((figures, message.as_str()), (SignalFigures::default(), "plateau since step 2"));
    }

    #[test]
    fn nan_metrics_round_trip_as_null() {
        let ev = Event::Step {
            step: 3,
            phase: "main".into(),
            t: 1.5,
            metrics: [("train_loss".to_string(), f64::NAN), ("lr".to_string(), 0.1)].into(),
        };
        let json = serde_json::to_string(&ev).unwrap();
        assert!(json.contains("\"train_loss\":null"), "{json}");
        let back: Event = serde_json::from_str(&json).unwrap();
        let Event::Step { metrics, .. } = back else { panic!("wrong kind") };
        assert!(metrics["train_loss"].is_nan());
        assert_eq!(metrics["lr"], 0.1);
    }

    #[test]
    fn commands_use_cmd_tag() {
        let c: Command = serde_json::from_str(r#"{"cmd":"set","key":"lr","value":0.01}"#).unwrap();
        assert_eq!(c, Command::Set { key: "lr".into(), value: 0.01 });
        let a: Command = serde_json::from_str(r#"{"cmd":"accept"}"#).unwrap();
        assert_eq!(a, Command::Accept { id: None });
        assert!(serde_json::from_str::<Command>(r#"{"cmd":"explode"}"#).is_err());
    }
}
