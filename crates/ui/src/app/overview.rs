//! `i`: the run at a glance — who and what it is (id, config, device, seed, tags, group,
//! notes), where it stands (phase, step, status), the job's own config (`init(config=…)`),
//! its summary (`run.summary`) and the last value of each step metric — as a row's detail
//! dialog. `phasetop inspect --json` has the same facts for scripts.

use super::{App, Mode};

/// Lines the dialog shows at most; the rest are counted.
const MAX_LINES: usize = 60;

impl App {
    pub(super) fn open_overview(&mut self) {
        self.mode = Mode::Detail { title: "run overview".into(), lines: overview_lines(&self.view) };
    }
}

fn overview_lines(v: &crate::model::state::RunView) -> Vec<String> {
    let mut lines = vec![format!("run     {}  (config {})", v.run_id, v.config_name)];
    let status = match (v.ended, v.paused) {
        (Some(s), _) => format!("{s:?}").to_lowercase(),
        (None, true) => "paused".into(),
        (None, false) => "running".into(),
    };
    let phase = v.phases.last().map_or("-", |p| p.name.as_str());
    lines.push(format!("status  {status} at step {} in phase {phase}", crate::fmt::step(v.step)));
    if !v.device.is_empty() || v.seed.is_some() {
        let seed = v.seed.map_or("-".into(), |s| s.to_string());
        lines.push(format!("device  {}  seed {seed}", if v.device.is_empty() { "-" } else { &v.device }));
    }
    if !v.tags.is_empty() {
        lines.push(format!("tags    {}", v.tags.join(", ")));
    }
    if let Some(g) = &v.group {
        lines.push(format!("group   {g}"));
    }
    if !v.notes.is_empty() {
        lines.push(format!("notes   {}", v.notes));
    }
    let mut section = |title: &str, rows: Vec<String>| {
        if !rows.is_empty() {
            lines.push(String::new());
            lines.push(title.to_string());
            lines.extend(rows.into_iter().map(|r| format!("  {r}")));
        }
    };
    section("job config (init(config=…))", flat(&v.job_config));
    section("summary", v.summary.iter().map(|(k, val)| format!("{k} = {}", value(val))).collect());
    // The last value of each step metric, as inspect's "final metrics".
    let last: Vec<String> = v
        .series
        .iter()
        .filter(|(k, _)| !k.starts_with("sys/"))
        .filter_map(|(k, s)| s.last().map(|(_, x)| format!("{k} = {}", crate::fmt::num(x))))
        .collect();
    section("last values", last);
    if lines.len() > MAX_LINES {
        let more = lines.len() - MAX_LINES;
        lines.truncate(MAX_LINES);
        lines.push(format!("… {more} more lines: phasetop inspect --json RUN_DIR"));
    }
    lines
}

/// A JSON config as `key = value` lines, nested keys joined by `.`.
fn flat(v: &serde_json::Value) -> Vec<String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&name, x, out);
                }
            }
            serde_json::Value::Null if prefix.is_empty() => {}
            other if prefix.is_empty() => out.push(value(other)),
            other => out.push(format!("{prefix} = {}", value(other))),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out
}

/// A value as the job gave it (numbers as written: `0.1`, `64`), strings unquoted.
fn value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    #[test]
    fn the_overview_names_the_jobs_config_tags_and_summary() {
        let events = [
            Event::RunInfo {
                step: 0,
                job_config: serde_json::json!({"lr": 0.1, "model": {"width": 64}}),
                tags: vec!["sweep".into(), "baseline".into()],
                notes: "first try".into(),
                group: Some("g1".into()),
            },
            Event::Summary { step: 5, values: serde_json::from_value(serde_json::json!({"best_acc": 0.97})).unwrap() },
        ];
        let v = crate::model::state::RunView::from_events(events.iter());
        let lines = overview_lines(&v);
        for want in [
            "tags    sweep, baseline",
            "group   g1",
            "notes   first try",
            "  lr = 0.1",
            "  model.width = 64",
            "  best_acc = 0.97",
        ] {
            assert!(lines.iter().any(|l| l == want), "{want:?} in {lines:#?}");
        }
    }
}
