//! The system panel: CPU %, resident memory, and the GPU's utilisation, memory and
//! temperature, from the `sys/*` metrics the host records once a second
//! (`crate::sysmon`: the built-in host's own process, an external run's job), so a
//! replay shows them as they were at its position. With several GPUs: their mean and
//! max utilisation, memory summed, the hottest.

use super::parts::{panel_block, rows_title};
use crate::app::App;
use crate::fmt;
use crate::sysmon;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use std::collections::BTreeMap;

/// The lines of the panel (also what the tests read): one a quantity, `label value`.
pub fn lines(app: &App) -> Vec<(&'static str, String)> {
    let v = app.rows_view();
    let last = |name: &str| v.series.get(name).and_then(|s| s.last()).map(|(_, x)| x);
    let mut rows = Vec::new();
    match last(sysmon::CPU_PCT) {
        Some(cpu) => rows.push(("CPU", format!("{} (100 = a core)", fmt::whole(cpu, "%")))),
        None if last(sysmon::RSS_MB).is_none() => {
            rows.push(("", "no samples in this log".to_string()));
            return rows;
        }
        None => rows.push(("CPU", "…".to_string())),
    }
    if let Some(rss) = last(sysmon::RSS_MB) {
        rows.push(("RSS", fmt::mb(rss)));
    }
    // Per GPU (the job's cuda:k) the latest of each `sys/gpu*` figure, by the first GPU's name.
    let mut gpus: BTreeMap<usize, BTreeMap<String, f64>> = BTreeMap::new();
    for (name, s) in &v.series {
        if let (Some((k, first)), Some((_, x))) = (sysmon::gpu_of(name), s.last()) {
            gpus.entry(k).or_default().insert(first, x);
        }
    }
    let all = |name: &str| gpus.values().filter_map(|g| g.get(name).copied()).collect::<Vec<f64>>();
    let (util, used, total, temp) =
        (all(sysmon::GPU_UTIL_PCT), all(sysmon::GPU_MEM_MB), all(sysmon::GPU_MEM_TOTAL_MB), all(sysmon::GPU_TEMP_C));
    let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if util.is_empty() && used.is_empty() {
        rows.push(("GPU", "none (no NVIDIA GPU)".to_string()));
    } else if gpus.len() == 1 {
        if let Some(u) = util.first() {
            rows.push(("GPU", fmt::whole(*u, "%")));
        }
        if let Some(m) = used.first() {
            rows.push(("VRAM", total.first().map_or_else(|| fmt::mb(*m), |t| fmt::mb_of(*m, *t))));
        }
        if let Some(t) = temp.first() {
            rows.push(("temp", fmt::whole(*t, "°C")));
        }
    } else {
        // Several GPUs (an external job's): how busy they are on average and the busiest,
        // memory summed, the hottest; each GPU's series is in the log (`sys/gpu<k>_*`).
        let n = gpus.len();
        if !util.is_empty() {
            let mean = util.iter().sum::<f64>() / util.len() as f64;
            rows.push(("GPU", format!("{n}× mean {mean:.0} %, max {:.0} %", max(&util))));
        }
        if !used.is_empty() {
            let used: f64 = used.iter().sum();
            rows.push(("VRAM", if total.is_empty() { fmt::mb(used) } else { fmt::mb_of(used, total.iter().sum()) }));
        }
        if !temp.is_empty() {
            rows.push(("temp", format!("max {:.0} °C", max(&temp))));
        }
    }
    rows
}

pub fn draw(f: &mut Frame, app: &App, area: Rect, focused: bool) {
    let t = &app.theme;
    let width = area.width.saturating_sub(2) as usize;
    let title = Line::from(Span::styled(format!(" {} ", rows_title(app, "system")), t.accent));
    let block = panel_block(app, title, focused);
    let text: Vec<Line> = lines(app)
        .into_iter()
        .map(|(label, value)| {
            let value = fmt::fit(&value, width.saturating_sub(6), app.ascii);
            let value = if app.ascii { value.replace('°', "deg ").replace('…', "...") } else { value };
            Line::from(vec![Span::styled(format!("{label:<5}"), t.dim), Span::raw(" "), Span::raw(value)])
        })
        .collect();
    f.render_widget(Paragraph::new(text).block(block), area);
}
