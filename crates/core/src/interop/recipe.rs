//! `phasetop export RUN --format config -o recipe.toml`: the run's plan as it actually
//! happened, as a config that reproduces it headless.
//!
//! The log is folded into segments of constant settings:
//! - every `phase_changed` (start, scheduled, manual, rule, accepted suggestion) begins a
//!   segment with the phase's definition from the plan in force then (`plan_changed`
//!   replaces it);
//! - an applied `set` at the step its phase began changes that segment's settings; a
//!   `set` later in a phase splits it: the rest becomes a segment named
//!   `<phase>.set<STEP>` with the phase's overrides so far as its settings,
//!   `reset_optimizer = false` (the optimizer state carries on, as it did) and its
//!   warm-up shortened by the steps already taken;
//! - a resume or rollback marker (`run_started` with `resumed_from_step`) drops what
//!   it supersedes.
//!
//! Each segment becomes a `[[phase]]` with fixed `steps` and no `until` rule (the switch
//! the rule made is now the step count), and `max_steps` is the run's last step: a run
//! trained from the recipe changes phase at the same steps. On the CPU it retraces the
//! run bit for bit when every split phase has a constant schedule; a split inside a
//! cosine, cooldown, cyclical or warm-up schedule restarts that shape (the file and
//! stderr say so). A branch's log starts at its parent's checkpoint, so it has no
//! recipe of its own: export the parent, and the branch's `--switch`/`--config`.

use crate::error::UsageError;
use crate::event::{Command, Event, PhaseCause};
use crate::runlog::LogContents;
use anyhow::{Result, bail};
use serde_json::Value as Json;

/// One stretch of the run under constant settings.
#[derive(Debug, Clone)]
struct Segment {
    start: u64,
    /// The phase's name in the run.
    phase: String,
    /// Its name in the recipe (unique).
    name: String,
    cause: String,
    /// The phase's definition (JSON, as the log holds configs) with this segment's settings.
    def: Json,
    /// Set commands folded in (step, text), for the comment.
    sets: Vec<(u64, String)>,
    /// Split from the previous segment by a `set` (the phase goes on).
    split: bool,
}

/// What [`recipe`] made: the TOML text and what it could not reproduce exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    pub toml: String,
    pub phases: usize,
    pub warnings: Vec<String>,
}

/// The recipe of a run from its log.
pub fn recipe(contents: &LogContents, run: &str) -> Result<Recipe> {
    let mut base: Option<Json> = None;
    let mut plan: Json = Json::Null;
    let mut segs: Vec<Segment> = Vec::new();
    let mut last_step = 0u64;
    for r in &contents.records {
        match &r.event {
            Event::RunStarted { config, resumed_from_step, parent_run, .. } => {
                if let Some(parent) = parent_run {
                    return Err(UsageError(format!(
                        "{run} is a branch of {parent}: its log starts at the parent's checkpoint, so it has no \
                         recipe of its own; export the parent's and branch it again"
                    ))
                    .into());
                }
                if base.is_none() {
                    base = Some(config.clone());
                }
                plan = config.clone();
                if let Some(from) = resumed_from_step {
                    segs.retain(|s| s.start <= *from);
                    for s in &mut segs {
                        s.sets.retain(|(at, _)| *at <= *from);
                    }
                    last_step = last_step.min(*from);
                }
            }
            Event::PlanChanged { config, .. } => plan = config.clone(),
            Event::PhaseChanged { step, to, cause, .. } => {
                let Some(def) = phase_def(&plan, to) else {
                    bail!("{run}: phase \"{to}\" (step {step}) is not in the plan the log records");
                };
                segs.push(Segment {
                    start: *step,
                    phase: to.clone(),
                    name: to.clone(),
                    cause: cause_name(*cause).into(),
                    def,
                    sets: Vec::new(),
                    split: false,
                });
            }
            Event::Command { step, command: Command::Set { key, value }, applied: true, .. } => {
                let Some(cur) = segs.last_mut() else { continue };
                if cur.start < *step {
                    let mut next = cur.clone();
                    next.start = *step;
                    next.split = true;
                    next.sets.clear();
                    next.cause = format!("set at step {step}");
                    segs.push(next);
                }
                let cur = segs.last_mut().expect("pushed or present");
                set_key(&mut cur.def, key, *value);
                cur.sets.push((*step, format!("{key} = {value}")));
            }
            Event::Step { step, .. } | Event::RunEnded { step, .. } => last_step = last_step.max(*step),
            _ => {}
        }
    }
    let Some(base) = base else { bail!("{run}: the log has no run_started record") };
    // Zero-length segments (a set and a switch at the same step) change nothing.
    let mut kept: Vec<Segment> = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        let end = segs.get(i + 1).map_or(last_step, |n| n.start);
        if end > s.start || (i + 1 == segs.len() && kept.is_empty()) {
            kept.push(s.clone());
        }
    }
    if kept.is_empty() || last_step == 0 {
        return Err(UsageError(format!("{run} has not trained a step: there is no plan to export")).into());
    }
    let mut warnings = Vec::new();
    let mut phases = Vec::new();
    let mut comments = Vec::new();
    let mut used: Vec<String> = Vec::new();
    for (i, s) in kept.iter().enumerate() {
        let end = kept.get(i + 1).map_or(last_step, |n| n.start);
        let mut def = s.def.clone();
        let mut name = if s.split { format!("{}.set{}", s.phase, s.start) } else { s.name.clone() };
        let mut n = 2;
        while used.contains(&name) {
            name = format!("{}.{n}", if s.split { format!("{}.set{}", s.phase, s.start) } else { s.name.clone() });
            n += 1;
        }
        used.push(name.clone());
        if let Json::Object(m) = &mut def {
            m.insert("name".into(), Json::String(name.clone()));
            m.insert("steps".into(), Json::from(end - s.start));
            m.remove("until");
            if s.split {
                m.insert("reset_optimizer".into(), Json::Bool(false));
                let schedule = m.get("schedule").and_then(Json::as_str).unwrap_or("constant").to_string();
                let warmup = m.get("warmup_steps").and_then(Json::as_u64).unwrap_or(0);
                let taken = s.start - phase_began(&kept[..=i]);
                if warmup > 0 {
                    m.insert("warmup_steps".into(), Json::from(warmup.saturating_sub(taken)));
                }
                if schedule != "constant" && schedule != "warmup" || warmup > taken {
                    warnings.push(format!(
                        "phase \"{}\" was changed by set at step {} inside its {} schedule: the recipe's \
                         \"{name}\" restarts that schedule there, so its lr differs from the run's",
                        s.phase,
                        s.start,
                        if warmup > taken { "warm-up".to_string() } else { schedule.clone() }
                    ));
                }
            }
        }
        let mut comment = format!("# steps {}–{end}: {} ({})", s.start, s.phase, s.cause);
        if !s.sets.is_empty() {
            let sets: Vec<&str> = s.sets.iter().map(|(_, t)| t.as_str()).collect();
            comment.push_str(&format!("; set {}", sets.join(", ")));
        }
        comments.push(comment);
        phases.push(def);
    }
    let mut doc = base;
    if let Json::Object(m) = &mut doc {
        m.insert("phase".into(), Json::Array(phases));
        if let Some(Json::Object(run_sec)) = m.get_mut("run") {
            run_sec.insert("max_steps".into(), Json::from(last_step));
        }
    }
    // Sections in the order the shipped configs use (a TOML table would sort them).
    let Json::Object(mut sections) = strip_nulls(doc) else { bail!("{run}: the recorded config is not a table") };
    let mut body = String::new();
    let order = ["run", "task", "model", "probes", "eval", "checkpoint", "phase"];
    let mut keys: Vec<String> = order.iter().map(|k| k.to_string()).collect();
    keys.extend(sections.keys().filter(|k| !order.contains(&k.as_str())).cloned().collect::<Vec<_>>());
    for key in keys {
        let Some(v) = sections.remove(&key) else { continue };
        let one = serde_json::json!({ key.clone(): v });
        let value: toml::Value = toml::Value::try_from(one)
            .map_err(|e| anyhow::anyhow!("{run}: the recorded [{key}] does not convert to TOML: {e}"))?;
        let part = toml::to_string(&value).map_err(|e| anyhow::anyhow!("{run}: cannot write the recipe: {e}"))?;
        body.push_str(&part);
        body.push('\n');
    }
    // The serializer writes every phase as `[[phase]]`; put each one's history above it.
    let mut text = format!(
        "# The plan of {run} as it happened (phasetop export --format config): every switch \
         (manual, rule,\n# suggestion) is a fixed phase length, every `set` a phase setting. \
         `phasetop train --headless` on\n# this file changes phase at the same steps.\n"
    );
    for w in &warnings {
        text.push_str(&format!("# note: {w}\n"));
    }
    text.push('\n');
    let mut rest = body.as_str();
    let mut i = 0;
    while let Some(at) = rest.find("[[phase]]\n") {
        let line_start = at == 0 || rest.as_bytes()[at - 1] == b'\n';
        text.push_str(&rest[..at]);
        if line_start && let Some(c) = comments.get(i) {
            text.push_str(c);
            text.push('\n');
            i += 1;
        }
        text.push_str("[[phase]]\n");
        rest = &rest[at + "[[phase]]\n".len()..];
    }
    text.push_str(rest);
    Ok(Recipe { toml: text, phases: comments.len(), warnings })
}

/// The step at which the phase of the last of `segs` began (before any `set` split).
fn phase_began(segs: &[Segment]) -> u64 {
    segs.iter().rev().find(|s| !s.split).map_or(0, |s| s.start)
}

fn cause_name(c: PhaseCause) -> &'static str {
    match c {
        PhaseCause::Start => "start",
        PhaseCause::Scheduled => "scheduled",
        PhaseCause::Manual => "switched by hand",
        PhaseCause::Rule => "switched by a rule",
        PhaseCause::Suggestion => "accepted suggestion",
    }
}

fn phase_def(plan: &Json, name: &str) -> Option<Json> {
    plan.get("phase")?.as_array()?.iter().find(|p| p.get("name").and_then(Json::as_str) == Some(name)).cloned()
}

/// A `set KEY=VALUE` as a phase setting (the keys `Trainer::set` takes).
fn set_key(def: &mut Json, key: &str, value: f64) {
    if let Json::Object(m) = def {
        let v = if key == "batch_size" { Json::from(value as i64) } else { Json::from(value) };
        m.insert(key.to_string(), v);
    }
}

/// TOML has no null: an absent optional setting is left out.
fn strip_nulls(v: Json) -> Json {
    match v {
        Json::Object(m) => {
            Json::Object(m.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, strip_nulls(v))).collect())
        }
        Json::Array(a) => Json::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shipped config survives the trip through the log's JSON into a recipe.
    #[test]
    fn shipped_configs_round_trip_through_json() {
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs")).unwrap() {
            let path = entry.unwrap().path();
            // External-run plans (`phasetop run`) have their own parser and no recipe.
            if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("external-")) {
                continue;
            }
            let src = std::fs::read_to_string(&path).unwrap();
            let cfg = crate::config::parse(&path.display().to_string(), &src).unwrap();
            let json = crate::config::as_json(&cfg);
            let text = toml::to_string(&toml::Value::try_from(strip_nulls(json.clone())).unwrap()).unwrap();
            let back = crate::config::parse("recipe.toml", &text).unwrap_or_else(|e| panic!("{path:?}: {e}\n{text}"));
            assert_eq!(crate::config::as_json(&back), json, "{path:?}");
        }
    }
}
