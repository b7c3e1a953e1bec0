//! Drawing the workspace: a header (how many runs, the filter), the run table, a footer
//! with the keys that matter here (always `? help` and `q quit`) and the help overlay,
//! built from the same keymap as the dashboard's.

use super::{RunRow, Workspace};
use crate::fmt;
use crate::keymap::{Keymap, Section};
use crate::theme::Theme;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState};

/// What drawing needs beside the state.
pub struct Look<'a> {
    pub theme: &'a Theme,
    pub keymap: &'a Keymap,
    pub ascii: bool,
    /// What the list covers, for the header: the roots as given.
    pub roots: &'a str,
}

pub fn draw(f: &mut Frame, ws: &Workspace, look: &Look) {
    let area = f.area();
    let [head, problems, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(ws.problems.len().min(3) as u16),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let vis = ws.visible();
    let mut title = vec![
        Span::styled(" phasetop workspace ", look.theme.accent),
        Span::raw(format!("{}  {} run{}", look.roots, ws.rows().len(), if ws.rows().len() == 1 { "" } else { "s" })),
    ];
    if !ws.filter.is_empty() || ws.editing_filter {
        title.push(Span::raw(format!(", {} shown  ", vis.len())));
        let cursor = if ws.editing_filter { "▏" } else { "" };
        title.push(Span::styled(format!("/{}{cursor}", ws.filter), look.theme.warn));
    }
    if !ws.selected.is_empty() {
        title.push(Span::raw(format!("  {} selected", ws.selected.len())));
    }
    if !ws.pending.is_empty() && !ws.rows().is_empty() {
        title.push(Span::styled(format!("  listing {}…", ws.pending.join(", ")), look.theme.dim));
    }
    f.render_widget(Paragraph::new(Line::from(title)), head);
    let lines: Vec<Line> =
        ws.problems.iter().take(3).map(|p| Line::from(Span::styled(format!(" {p}"), look.theme.warn))).collect();
    f.render_widget(Paragraph::new(lines), problems);
    draw_table(f, ws, &vis, look, body);
    draw_footer(f, ws, look, foot);
    if ws.help {
        draw_help(f, ws, look, area);
    }
}

fn draw_table(f: &mut Frame, ws: &Workspace, vis: &[&RunRow], look: &Look, area: Rect) {
    let block = Block::default().borders(Borders::TOP).border_style(look.theme.border);
    if vis.is_empty() {
        let why = if ws.rows().is_empty() && !ws.pending.is_empty() {
            format!("listing {}…", ws.pending.join(", "))
        } else if ws.rows().is_empty() {
            "no runs under these roots yet".to_string()
        } else {
            format!("no run matches \"{}\" (Esc in the filter clears it)", ws.filter)
        };
        f.render_widget(Paragraph::new(Span::styled(why, look.theme.dim)).block(block), area);
        return;
    }
    // The spark takes what the fixed columns leave (at least 8 cells, else none).
    let fixed = 2 + 28 + 14 + 10 + 12 + 9 + 5 + 9 + 8;
    let spark_w = (area.width as usize).saturating_sub(fixed).min(40);
    let header =
        Row::new(["", "RUN", "CONFIG", "STATUS", "PHASE", "STEP", "AGE", "LOSS", "RECENT"]).style(look.theme.dim);
    let rows = vis.iter().map(|r| {
        let mark = if ws.selected.contains(&r.key) { if look.ascii { "*" } else { "●" } } else { " " };
        let name = if r.host.is_empty() { r.name.clone() } else { format!("{}:{}", r.host, r.name) };
        let status_style = match r.status.as_str() {
            "failed" | "diverged" | "stale" => look.theme.error,
            "live" | "running" => look.theme.ok,
            "paused" => look.theme.warn,
            _ => Style::default(),
        };
        Row::new(vec![
            Cell::from(mark),
            Cell::from(fmt::fit(&name, 27, look.ascii)),
            Cell::from(fmt::fit(&r.config, 13, look.ascii)),
            Cell::from(Span::styled(r.status.clone(), status_style)),
            Cell::from(fmt::fit(&r.phase, 11, look.ascii)),
            Cell::from(fmt::step(r.step)),
            Cell::from(r.age_s.map_or("-".into(), fmt::age)),
            Cell::from(r.last_loss.map_or("-".into(), fmt::num)),
            Cell::from(if spark_w >= 8 { fmt::spark(&r.spark, spark_w, look.ascii) } else { String::new() }),
        ])
    });
    let widths = [
        Constraint::Length(1),
        Constraint::Length(27),
        Constraint::Length(13),
        Constraint::Length(9),
        Constraint::Length(11),
        Constraint::Length(8),
        Constraint::Length(4),
        Constraint::Length(8),
        Constraint::Min(0),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .row_highlight_style(look.theme.highlight)
        .column_spacing(1);
    let mut state = TableState::default().with_selected(ws.cursor_index());
    f.render_stateful_widget(table, area, &mut state);
}

fn draw_footer(f: &mut Frame, ws: &Workspace, look: &Look, area: Rect) {
    if let Some(m) = &ws.message {
        f.render_widget(Paragraph::new(Span::styled(m.clone(), look.theme.warn)), area);
        return;
    }
    let text = if ws.editing_filter {
        "type to filter (status: config: tag: phase:)  enter keep  esc clear".to_string()
    } else {
        // The keys as bound (a user's overrides show), the ones that matter here.
        let k = |a| look.keymap.keys.get(&a).and_then(|v| v.first().cloned()).unwrap_or_default();
        use crate::keymap::Action::*;
        format!(
            "{} open  {} select  {} compare  {} filter  {} help  {} quit",
            k(WsOpen),
            k(WsSelect),
            k(WsCompare),
            k(WsFilter),
            k(Help),
            k(WsQuit)
        )
    };
    // The right end (help, quit) is the part that must survive a narrow terminal.
    let w = area.width as usize;
    let shown = if text.chars().count() > w { text.chars().skip(text.chars().count() - w).collect() } else { text };
    f.render_widget(Paragraph::new(Span::styled(shown, look.theme.dim)), area);
}

/// The workspace's own section of the keymap, then the dashboard's (what a run opened
/// from here answers to).
fn draw_help(f: &mut Frame, ws: &Workspace, look: &Look, area: Rect) {
    let mut lines = Vec::new();
    for (section, rows) in look.keymap.help_sections(|s, _| matches!(s, Section::Workspace | Section::Dashboard)) {
        lines.push(Line::from(Span::styled(section.title(), look.theme.accent)));
        for (keys, help) in rows {
            lines.push(Line::from(format!("  {keys:<16} {help}")));
        }
        lines.push(Line::from(""));
    }
    let w = area.width.saturating_sub(4).min(90);
    let h = area.height.saturating_sub(2);
    let r = Rect { x: area.x + (area.width - w) / 2, y: area.y + 1, width: w, height: h };
    f.render_widget(Clear, r);
    let block = Block::default().borders(Borders::ALL).title(" help: ?/esc closes, j/k scroll ");
    f.render_widget(Paragraph::new(lines).block(block).scroll((ws.help_scroll, 0)), r);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::theme::ThemeKind;
    use ratatui::{Terminal, backend::TestBackend};

    fn screen(ws: &Workspace) -> String {
        let (theme, keymap) = (Theme::new(ThemeKind::Default), Keymap::new(&Default::default()).unwrap());
        let look = Look { theme: &theme, keymap: &keymap, ascii: false, roots: "runs me@gpu:runs" };
        let mut term = Terminal::new(TestBackend::new(120, 12)).unwrap();
        term.draw(|f| draw(f, ws, &look)).unwrap();
        let buf = term.backend().buffer();
        (0..buf.area.height)
            .map(|y| (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect::<String>() + "\n")
            .collect()
    }

    /// Before a root has answered the list says it is listing it, never "no runs"; once
    /// some rows are in, the header names the roots still being listed.
    #[test]
    fn roots_not_listed_yet_are_said_to_be_listing() {
        let mut ws = Workspace { pending: vec!["runs".into(), "me@gpu:runs".into()], ..Workspace::default() };
        let s = screen(&ws);
        assert!(s.contains("listing runs, me@gpu:runs…") && !s.contains("no runs"), "{s}");
        ws.set_rows(vec![RunRow { key: "runs/a".into(), name: "a".into(), ..RunRow::default() }]);
        ws.pending = vec!["me@gpu:runs".into()];
        let s = screen(&ws);
        assert!(s.lines().next().unwrap_or("").contains("1 run  listing me@gpu:runs…"), "{s}");
        ws.pending.clear();
        ws.set_rows(Vec::new());
        assert!(screen(&ws).contains("no runs under these roots yet"));
    }
}
