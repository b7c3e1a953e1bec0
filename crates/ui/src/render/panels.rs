//! The list panels: signals, plan (boxed or one line) and events.

use super::parts::*;

/// The rows of a list panel that fit `height`, newest first, and which of them (its
/// index in `rows`) is selected: the newest rows, or a window holding the selection.
fn list_window(app: &App, panel: Panel, n: usize, height: usize) -> (Vec<usize>, Option<usize>) {
    let sel = app.rows.selected.get(&panel).copied().filter(|&i| i < n);
    // Positions from the newest row.
    let pos = sel.map(|i| n - 1 - i);
    let skip = pos.map_or(0, |p| p.saturating_sub(height.saturating_sub(1)));
    let rows: Vec<usize> = (0..n).rev().skip(skip).take(height).collect();
    (rows, sel)
}

/// A list panel's title: its name, where the selection is when it has scrolled from
/// the newest rows, and the legend of its chart marker where there is room.
fn list_title<'a>(app: &App, name: &str, legend: &str, n: usize, sel: Option<usize>, width: u16) -> Line<'a> {
    let t = &app.theme;
    let mut segs = vec![(u8::MAX, vec![Span::styled(format!(" {name} "), t.accent)])];
    if let Some(i) = sel {
        segs.push((9, vec![Span::styled(format!("{}/{} ", n - i, n), t.warn)]));
    }
    segs.push((1, vec![Span::styled(format!("{legend} "), t.dim)]));
    Line::from(fit_segments(segs, width.saturating_sub(2) as usize))
}

pub(super) fn draw_signals(f: &mut Frame, app: &App, area: Rect, focused: bool) {
    let v = app.rows_view();
    let t = &app.theme;
    let width = area.width.saturating_sub(2) as usize;
    let height = area.height.saturating_sub(2) as usize;
    let (tri, arrow) = if app.ascii { ("^", "->") } else { ("▲", "→") };
    let mut lines = Vec::new();
    if let Some(s) = v.pending_suggestion().filter(|_| app.is_live()) {
        let a = app.keymap.first_key(crate::keymap::Action::Accept);
        let d = app.keymap.first_key(crate::keymap::Action::Dismiss);
        let text = format!(
            "{} suggestion: switch {arrow} {} ({})  [{a}]ccept [{d}]ismiss",
            if app.ascii { ">" } else { "▶" },
            s.to_phase,
            s.because
        );
        lines
            .push(Line::from(Span::styled(fmt::fit(&text, width, app.ascii), t.warn.add_modifier(Modifier::REVERSED))));
    } else if let Some(s) = v.pending_suggestion().or(v.expired_suggestion()) {
        // Nobody can answer it any more: the run ended (or is not live).
        let text = format!(
            "{} suggestion expired: switch {arrow} {} ({}), not answered",
            if app.ascii { "x" } else { "✗" },
            s.to_phase,
            s.because
        );
        lines.push(Line::from(Span::styled(fmt::fit(&text, width, app.ascii), t.dim)));
    }
    let n = v.signals.len();
    let (rows, sel) = list_window(app, Panel::Signals, n, height.saturating_sub(lines.len()));
    // Without an events panel on screen (a small arrangement) this legend also says ▼.
    let legend = if app.panels().contains(&Panel::Events) {
        format!("{tri} on charts")
    } else {
        format!("{tri} signal {} command on charts", if app.ascii { "v" } else { "▼" })
    };
    let block = panel_block(app, list_title(app, &rows_title(app, "signals"), &legend, n, sel, area.width), focused);
    for i in rows {
        let s = &v.signals[i];
        let step = format!("{:>9} ", fmt::step(s.step));
        let head = step.clone();
        // In words: what it means and what one might do; the detector's message with its
        // figures is the row's full text (Enter). Words are shortened, never a number.
        let switch = app.is_live().then(|| app.keymap.first_key(crate::keymap::Action::SwitchPhase));
        // The phase after the one it fired in: advice names it, or says there is none.
        let next = v.phase_at(s.step).and_then(|p| {
            let i = v.plan.iter().position(|x| x.name == p.name)?;
            v.plan.get(i + 1).map(|x| x.name.as_str())
        });
        let next = if v.plan.is_empty() { Some("the next phase") } else { next };
        let mut gist = crate::app::signal_gist(s, switch, next, app.ascii);
        if s.count > 1 {
            // One episode: how often it fired and until when, after what it means (before
            // the advice, which `fit` drops first).
            let times = if app.ascii { "x" } else { "×" };
            let episode = format!(" {times}{} to {}", s.count, fmt::step(s.last_step));
            let dash = if app.ascii { " - " } else { " — " };
            gist = match gist.find(dash) {
                Some(i) => format!("{}{episode}{}", &gist[..i], &gist[i..]),
                None => gist + &episode,
            };
        }
        let rest = fmt::fit(&gist, width.saturating_sub(head.chars().count()), app.ascii);
        // The detector's name (up to the first colon) in the accent colour.
        let (name, words) =
            rest.split_once(':').map_or((String::new(), rest.clone()), |(a, b)| (format!("{a}:"), b.to_string()));
        let mut spans = vec![Span::styled(step, t.dim), Span::styled(name, t.accent), Span::raw(words)];
        if sel == Some(i) {
            spans = spans.into_iter().map(|x| x.patch_style(t.highlight)).collect();
        }
        lines.push(Line::from(spans));
    }
    if lines.is_empty() {
        lines.push(Line::from(Span::styled("no signals yet", t.dim)));
    }
    f.render_widget(Paragraph::new(lines).block(block), area);
}

pub(super) fn draw_plan(f: &mut Frame, app: &App, area: Rect, focused: bool) {
    if area.height < 3 {
        return draw_plan_line(f, app, area, focused);
    }
    let v = app.rows_view();
    let t = &app.theme;
    let width = area.width.saturating_sub(2) as usize;
    let block = panel_block(app, Line::from(Span::styled(format!(" {} ", rows_title(app, "plan")), t.accent)), focused);
    let current = v.current_phase();
    let (arrow, more) = if app.ascii { ("->", "...") } else { ("→", "…") };
    let mut lines = Vec::new();
    for (i, p) in v.plan.iter().enumerate() {
        let spans_of: Vec<_> = v.phases.iter().filter(|s| s.name == p.name).collect();
        // A run that ended has no current phase: its last phase is done too.
        let is_current = v.ended.is_none() && current.is_some_and(|c| c.name == p.name);
        let done = !is_current && !spans_of.is_empty();
        let glyph = plan_glyph(is_current, done, app.ascii);
        let span_text = match spans_of.last() {
            Some(s) => format!("{} {arrow} {}", fmt::step(s.start), s.end.map_or(more.into(), fmt::step)),
            None => String::new(),
        };
        let until = match (&p.steps, &p.until) {
            (Some(n), Some(u)) => format!("steps = {n} or {u}"),
            (Some(n), None) => format!("steps = {n}"),
            (None, Some(u)) => format!("until {u}"),
            (None, None) => "until: manual".into(),
        };
        let head = format!("{glyph} {:<12}", p.name);
        let mid = format!(" {span_text:<20} ");
        let used = head.chars().count() + mid.chars().count();
        let mut spans = vec![
            Span::styled(head, t.phase_fg(i)),
            Span::raw(mid),
            Span::styled(fmt::fit(&until, width.saturating_sub(used), app.ascii), t.dim),
        ];
        if let (true, Some(n), Some(c)) = (is_current, p.steps, current) {
            let done = v.step.saturating_sub(c.start).min(n);
            let bar = 10;
            let filled = (done as f64 / n as f64 * bar as f64).round() as usize;
            let (full, empty) = if app.ascii { ("#", ".") } else { ("█", "░") };
            let used = used + spans[2].width();
            if used + 2 + bar <= width {
                spans.push(Span::styled(
                    format!("  {}{}", full.repeat(filled), empty.repeat(bar - filled)),
                    t.phase_fg(i),
                ));
            }
        }
        lines.push(Line::from(spans));
    }
    f.render_widget(Paragraph::new(lines).block(block), area);
}

pub(super) fn draw_events(f: &mut Frame, app: &App, area: Rect, focused: bool) {
    let t = &app.theme;
    let width = area.width.saturating_sub(2) as usize;
    let height = area.height.saturating_sub(2) as usize;
    let v = app.rows_view();
    let n = v.log.len();
    let (rows, sel) = list_window(app, Panel::Events, n, height);
    let legend = if app.ascii { "v = command on charts" } else { "▼ = command on charts" };
    let block = panel_block(app, list_title(app, &rows_title(app, "events"), legend, n, sel, area.width), focused);
    let lines: Vec<Line> = rows
        .into_iter()
        .map(|i| {
            let r = &v.log[i];
            let style = match r.kind {
                "warn" | "command" | "suggest" => t.warn,
                "error" => t.error,
                "phase" | "signal" => t.accent,
                _ => Style::default(),
            };
            let text = fmt::fit(&r.text, width.saturating_sub(18), app.ascii);
            let spans = vec![
                Span::styled(format!("{:>9} ", fmt::step(r.step)), t.dim),
                Span::styled(format!("{:<8}", r.kind), style),
                Span::raw(text),
            ];
            if sel == Some(i) {
                Line::from(spans.into_iter().map(|x| x.patch_style(t.highlight)).collect::<Vec<_>>())
            } else {
                Line::from(spans)
            }
        })
        .collect();
    f.render_widget(Paragraph::new(lines).block(block), area);
}

/// The plan in one line, without a border (a `height = 1` row of a small layout): each
/// phase's glyph, name and span; the current phase and the next are kept, finished
/// phases dropped first (whole) when the line is too narrow.
fn draw_plan_line(f: &mut Frame, app: &App, area: Rect, focused: bool) {
    let v = app.rows_view();
    let t = &app.theme;
    let current = v.current_phase();
    let (arrow, more) = if app.ascii { ("->", "...") } else { ("→", "…") };
    let label = if focused { t.focus_border } else { t.accent };
    let mut segs = vec![(u8::MAX, vec![Span::styled(format!(" {} ", rows_title(app, "plan")), label)])];
    let now = v.plan.iter().position(|p| v.ended.is_none() && current.is_some_and(|c| c.name == p.name));
    for (i, p) in v.plan.iter().enumerate() {
        let span = v.phases.iter().rfind(|s| s.name == p.name);
        let is_current = now == Some(i);
        let glyph = plan_glyph(is_current, span.is_some(), app.ascii);
        let mut text = format!(" {glyph} {}", p.name);
        if let Some(s) = span {
            let _ = std::fmt::Write::write_fmt(
                &mut text,
                format_args!(" {} {arrow} {}", fmt::step(s.start), s.end.map_or(more.into(), fmt::step)),
            );
        }
        let priority = match now {
            Some(c) if i == c => u8::MAX,
            Some(c) if i == c + 1 => 8,
            Some(c) if i > c => 4,
            _ => 2 + (i.min(3) as u8) / 2,
        };
        segs.push((priority, vec![Span::styled(text, t.phase_fg(i))]));
    }
    f.render_widget(Paragraph::new(Line::from(fit_segments(segs, area.width as usize))), area);
}

/// A plan entry's mark: the current phase, one that has run, one still to come.
pub(super) fn plan_glyph(current: bool, done: bool, ascii: bool) -> &'static str {
    match (current, done, ascii) {
        (true, _, false) => "●",
        (true, _, true) => "*",
        (false, true, false) => "✓",
        (false, true, true) => "+",
        (false, false, false) => "○",
        (false, false, true) => "o",
    }
}
