//! The console pane: the run's own output over the lower part of the dashboard.

use super::parts::*;

pub(super) fn draw_console(f: &mut Frame, app: &App, area: Rect) {
    let Some(pane) = app.console.as_ref() else { return };
    // The lower three fifths: the header and the top charts stay in view.
    let h = (area.height * 3 / 5).max(5).min(area.height);
    let r = Rect { x: area.x, y: area.y + area.height - h, width: area.width, height: h };
    f.render_widget(Clear, r);
    let inner = r.height.saturating_sub(2) as usize;
    pane.page.set(inner.max(1));
    let lines = &pane.console.lines;
    let end = lines.len().saturating_sub(pane.scroll);
    let start = end.saturating_sub(inner);
    let names = pane.console.names();
    let what = if names.is_empty() { "no output yet (job.log, host.log)".to_string() } else { names.join(" + ") };
    let place =
        if pane.scroll == 0 { "following".to_string() } else { format!("{} lines up (G follows)", pane.scroll) };
    let close = app.keymap.first_key(crate::keymap::Action::ConsoleClose);
    let title = format!(" console: {what} · {place} · j/k scroll · {close} closes ");
    let block = panel_block(app, Line::from(Span::styled(title, app.theme.accent)), true);
    let shown: Vec<Line> = lines.range(start..end).map(|l| Line::from(l.clone())).collect();
    f.render_widget(Paragraph::new(shown).block(block), r);
}
