//! The keys `set` accepts on a run: the run's own. A built-in run's are the trainer's
//! typed settings ([`crate::settings::SETTABLE_KEYS`]); an external run's are the setting
//! keys its plan's phases declare, each typed by the value the plan gives it. `ctl` and
//! the dashboard check a `set` against them before sending (from the log's `run_started`),
//! and the host checks again (a socket frame may name anything).

use crate::settings::SETTABLE_KEYS;
use std::collections::BTreeMap;

/// What a plan's value says a key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A float in the plan (`lr = 0.05`): any finite number.
    Float,
    /// An integer in the plan (`accum = 4`): an integral number.
    Integer,
    /// A string, boolean, array or table: `set` (numbers only) cannot change it.
    Other(&'static str),
}

#[derive(Clone, Debug, PartialEq)]
pub enum SetKeys {
    /// The built-in trainer's settings.
    Trainer,
    /// An external run's plan: key → kind. Empty: the plan declares no settings, so the
    /// script's own names are taken as they come (any number).
    Plan(BTreeMap<String, Kind>),
}

impl SetKeys {
    /// The keys of a run from its `run_started` config: an external run's config carries
    /// an `external` object (its phases' free settings beside `name`/`steps`/`until`).
    pub fn of_run_config(config: &serde_json::Value) -> SetKeys {
        if config.get("external").is_none() {
            return SetKeys::Trainer;
        }
        let mut keys = BTreeMap::new();
        for phase in config.get("phase").and_then(|p| p.as_array()).into_iter().flatten() {
            for (k, v) in phase.as_object().into_iter().flatten() {
                if matches!(k.as_str(), "name" | "steps" | "until") {
                    continue;
                }
                let kind = kind_of(v);
                // A key that is an integer in one phase and a float in another is a float.
                let merged = match (keys.get(k), kind) {
                    (Some(Kind::Integer), Kind::Float) | (Some(Kind::Float), Kind::Integer) => Kind::Float,
                    (Some(old), _) => *old,
                    (None, k) => k,
                };
                keys.insert(k.clone(), merged);
            }
        }
        SetKeys::Plan(keys)
    }

    /// The names, for completion and messages.
    pub fn names(&self) -> Vec<String> {
        match self {
            SetKeys::Trainer => SETTABLE_KEYS.iter().map(|k| k.to_string()).collect(),
            SetKeys::Plan(k) => {
                k.iter().filter(|(_, kind)| !matches!(kind, Kind::Other(_))).map(|(k, _)| k.clone()).collect()
            }
        }
    }

    /// Whether `set key=value` names one of the run's keys with a value of its kind.
    pub fn check(&self, key: &str, value: f64) -> Result<(), String> {
        match self {
            SetKeys::Trainer if SETTABLE_KEYS.contains(&key) => Ok(()),
            SetKeys::Trainer => Err(crate::grammar::GrammarError::UnknownKey(key.to_string()).to_string()),
            SetKeys::Plan(keys) if keys.is_empty() => crate::external::protocol::check_metric_name(key)
                .map_err(|e| format!("set: {}", e.replace("metric name", "key"))),
            SetKeys::Plan(keys) => match keys.get(key) {
                None => Err(format!(
                    "unknown key \"{key}\": this run's plan sets {} (set changes one of its phases' settings)",
                    self.names().join(", ")
                )),
                Some(Kind::Other(what)) => {
                    Err(format!("set {key}: the plan gives it a {what}; set changes numeric settings only"))
                }
                Some(Kind::Integer) if value.fract() != 0.0 || value.abs() > 2f64.powi(53) => {
                    Err(format!("set {key}: the plan gives it an integer; {value} is not one"))
                }
                Some(_) => Ok(()),
            },
        }
    }

    /// The value as the job receives it: an integer key's as a JSON integer.
    pub fn json_value(&self, key: &str, value: f64) -> serde_json::Value {
        match self {
            SetKeys::Plan(keys) if keys.get(key) == Some(&Kind::Integer) => serde_json::Value::from(value as i64),
            _ => serde_json::Value::from(value),
        }
    }
}

/// The keys of the run whose log is at `log`, from its first record (`run_started`);
/// `None` when the log cannot tell (missing, unreadable): the host then decides alone.
pub fn of_log(log: &std::path::Path) -> Option<SetKeys> {
    let mut reader = crate::runlog::Reader::open(log).ok()?;
    match reader.next()?.ok()?.event {
        crate::event::Event::RunStarted { config, .. } => Some(SetKeys::of_run_config(&config)),
        _ => None,
    }
}

fn kind_of(v: &serde_json::Value) -> Kind {
    match v {
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => Kind::Integer,
        serde_json::Value::Number(_) => Kind::Float,
        serde_json::Value::Bool(_) => Kind::Other("boolean"),
        serde_json::Value::String(_) => Kind::Other("string"),
        serde_json::Value::Array(_) => Kind::Other("list"),
        _ => Kind::Other("table"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_runs_keys_are_its_own_and_typed_by_the_plan() {
        assert_eq!(SetKeys::of_run_config(&json!({"phase": [{"name": "a", "lr": 0.1}]})), SetKeys::Trainer);
        let ext = SetKeys::of_run_config(&json!({
            "external": {"command": ["x"]},
            "phase": [{"name": "a", "steps": 10, "lr": 0.1, "aux_w": 1, "tag": "s"}, {"name": "b", "aux_w": 0.5}]
        }));
        assert_eq!(ext.names(), ["aux_w", "lr"]);
        assert!(ext.check("aux_w", 0.25).is_ok(), "integer in one phase, float in another: a float");
        assert!(ext.check("lr", 1e-3).is_ok());
        let e = ext.check("momentum", 0.9).unwrap_err();
        assert!(e.contains("unknown key \"momentum\"") && e.contains("aux_w, lr"), "{e}");
        assert!(ext.check("tag", 1.0).unwrap_err().contains("string"));
        assert!(ext.check("steps", 1.0).is_err(), "steps is the plan's, not a setting");
        let ints = SetKeys::of_run_config(&json!({"external": {}, "phase": [{"name": "a", "accum": 4}]}));
        assert!(ints.check("accum", 2.5).unwrap_err().contains("integer"));
        assert_eq!(ints.json_value("accum", 8.0), json!(8));
        // A plan with no settings: the script's names, any number.
        let free = SetKeys::of_run_config(&json!({"external": {}, "phase": [{"name": "main"}]}));
        assert!(free.check("anything", 1.0).is_ok());
        assert_eq!(
            SetKeys::Trainer.check("aux_w", 1.0).unwrap_err(),
            "unknown key \"aux_w\", expected one of lr, weight_decay, momentum, batch_size, label_noise"
        );
    }
}
