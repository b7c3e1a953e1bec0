//! Overlays over the dashboard: help, the phase picker, confirmations, a row's detail.

use super::parts::*;

/// The overlay the mode asks for (help, picker, confirmations, a row's detail), over
/// the dashboard.
pub(super) fn draw_overlay(f: &mut Frame, app: &App, area: Rect) {
    match &app.mode {
        Mode::Help => draw_help(f, app, area),
        Mode::Console => super::console::draw_console(f, app, area),
        Mode::PhasePicker { selected } => draw_picker(f, app, area, *selected),
        Mode::Confirm { phase } => {
            let text =
                format!("switch to phase \"{phase}\" at the next step boundary?  [y/Enter] yes   [any other key] no");
            draw_dialog(f, app, area, "confirm", vec![Line::from(text)]);
        }
        Mode::ConfirmPlan { file, phases, .. } => {
            let lines = vec![
                Line::from(format!("{file} changed. New plan: {}", phases.join(" → "))),
                Line::from("apply its future phases to the live run?  [y/Enter] apply   [any other key] no"),
            ];
            draw_dialog(f, app, area, "config edited", lines);
        }
        Mode::Detail { title, lines } => draw_detail(f, app, area, title, lines),
        Mode::Quit { selected } => {
            let opts = ["detach (training goes on)", "stop the run (checkpoint, then stop)", "cancel"];
            let lines = opts
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    let style = if i == *selected { app.theme.highlight } else { Style::default() };
                    let key = ["d", "s", "Esc"][i];
                    Line::from(vec![Span::styled(format!(" [{key}] {o} "), style)])
                })
                .collect();
            draw_dialog(f, app, area, "quit", lines);
        }
        _ => {}
    }
}

/// A row's full text, wrapped (Enter on a focused signals or events row).
fn draw_detail(f: &mut Frame, app: &App, area: Rect, title: &str, text: &[String]) {
    let w = area.width.saturating_sub(4).min(100);
    let inner_w = w.saturating_sub(2).max(1) as usize;
    // Height of the wrapped text (words never split, as the Paragraph wraps them).
    let rows: usize = text.iter().map(|l| (l.chars().count().max(1)).div_ceil(inner_w) + 1).sum::<usize>() + 1;
    let h = (rows as u16 + 2).min(area.height);
    let r = centered(area, w, h);
    f.render_widget(Clear, r);
    let mut lines: Vec<Line> = text.iter().map(|l| Line::from(l.clone())).collect();
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled("any key closes", app.theme.dim)));
    let block = panel_block(app, Line::from(Span::styled(format!(" {title} "), app.theme.accent)), true);
    f.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }), r);
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

fn draw_dialog(f: &mut Frame, app: &App, area: Rect, title: &str, lines: Vec<Line>) {
    let w = lines.iter().map(|l| l.width() as u16).max().unwrap_or(20) + 4;
    let r = centered(area, w.max(30), lines.len() as u16 + 2);
    f.render_widget(Clear, r);
    let block = panel_block(app, Line::from(Span::styled(format!(" {title} "), app.theme.accent)), true);
    f.render_widget(Paragraph::new(lines).block(block), r);
}

fn draw_help(f: &mut Frame, app: &App, area: Rect) {
    use crate::keymap::Section;
    // Every key from the keymap's table, one section per mode: those that work here.
    let keep = |sec: Section, a| match sec {
        Section::Dashboard => app.action_available(a),
        Section::Transport => app.player.is_some(),
        Section::Quit => app.is_live(),
        Section::Picker | Section::Confirm => app.is_live(),
        // The workspace's list keys are its own help's.
        Section::Workspace => false,
        Section::Console => app.console.is_some(),
        _ => true,
    };
    let dim = |s: &str| Line::from(Span::styled(s.to_string(), app.theme.dim));
    let mut lines: Vec<Line> = Vec::new();
    for (i, (section, rows)) in app.keymap.help_sections(keep).into_iter().enumerate() {
        if i > 0 {
            lines.push(Line::from(""));
        }
        lines.push(Line::from(Span::styled(format!("  {}", section.title()), app.theme.accent)));
        for (keys, help) in rows {
            lines.push(Line::from(vec![Span::styled(format!("{keys:>16}  "), app.theme.accent), Span::raw(help)]));
        }
        if section == Section::Transport {
            lines.push(dim(
                "          footer: the scrubber (━ played, ┃ phase change, ▲ signal, ● here; ascii = | ^ #)",
            ));
        }
    }
    lines.push(Line::from(""));
    lines
        .push(dim("  charts: ▲ a signal fired, ▼ an operator command, │ the cursor; l o S A act on the focused chart"));
    lines.push(dim("  header: \"starved (was N)\": the run goes far slower than its own recent rate N it/s"));
    lines.push(dim("    (the machine is busy, or the data loader is the bottleneck); signals ×N: one episode"));
    if app.is_live() {
        lines.push(dim("  : commands: switch PHASE, pause, resume, stop, checkpoint, set lr=…,"));
        lines.push(dim("    accept, dismiss, goto STEP, smooth 0.9, layout NAME   (Tab completes)"));
    } else {
        lines.push(dim("  : commands: goto STEP, smooth 0.9, layout NAME   (Tab completes)"));
        lines.push(dim("    the run is not live: no pause, switch, checkpoint or set; q quits at once"));
    }
    // Scrolls when taller than the screen: the title says where it is.
    let inner = area.height.saturating_sub(4).max(1) as usize;
    let max = lines.len().saturating_sub(inner);
    app.help.max.set(max);
    app.help.page.set(inner);
    let top = app.help.scroll.min(max);
    let title = if max > 0 {
        format!("help  {}-{}/{}  ↑/↓ scroll, ? or Esc closes", top + 1, (top + inner).min(lines.len()), lines.len())
    } else {
        "help  ? or Esc closes".to_string()
    };
    let shown: Vec<Line> = lines.into_iter().skip(top).take(inner).collect();
    draw_dialog(f, app, area, &title, shown);
}

fn draw_picker(f: &mut Frame, app: &App, area: Rect, selected: usize) {
    let current = app.view.current_phase().map(|p| p.name.clone());
    let mut lines: Vec<Line> = app
        .view
        .plan
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mark = if Some(&p.name) == current.as_ref() { " (current)" } else { "" };
            let style = if i == selected { app.theme.highlight } else { app.theme.phase_fg(i) };
            Line::from(Span::styled(format!(" {} {}{mark} ", if i == selected { ">" } else { " " }, p.name), style))
        })
        .collect();
    let hint = if app.ascii {
        " up/down choose, Enter confirm, Esc cancel"
    } else {
        " ↑/↓ choose, Enter confirm, Esc cancel"
    };
    lines.push(Line::from(Span::styled(hint, app.theme.dim)));
    draw_dialog(f, app, area, "switch phase", lines);
}
