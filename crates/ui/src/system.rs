//! The system panel: the host's CPU %, resident memory, and the GPU's utilisation,
//! memory and temperature, from the `sys/*` metrics the host records once a second
//! (`crate::sysmon`), so a replay shows them as they were at its position.

use super::app::App;
use super::fmt;
use super::render::{panel_block, rows_title};
use crate::sysmon;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

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
    match last(sysmon::GPU_UTIL_PCT).or(last(sysmon::GPU_MEM_MB)) {
        None => rows.push(("GPU", "none (no NVIDIA GPU)".to_string())),
        Some(_) => {
            if let Some(u) = last(sysmon::GPU_UTIL_PCT) {
                rows.push(("GPU", fmt::whole(u, "%")));
            }
            if let Some(m) = last(sysmon::GPU_MEM_MB) {
                let total = last(sysmon::GPU_MEM_TOTAL_MB).map(|t| format!(" of {}", fmt::mb(t))).unwrap_or_default();
                rows.push(("VRAM", format!("{}{total}", fmt::mb(m))));
            }
            if let Some(t) = last(sysmon::GPU_TEMP_C) {
                rows.push(("temp", fmt::whole(t, "°C")));
            }
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
