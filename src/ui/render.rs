//! Drawing: a pure function of the [`App`] onto a ratatui frame. Chart cost depends on
//! the chart's width, not on the history length (see `series.rs`).

use super::app::{App, DIVERSITY_METRICS, Link, Mode};
use super::compare;
use super::layout::Panel;
use super::replay_index::MarkKind;
use super::state::{Mark, RunView};
use crate::event::RunStatus;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, BorderType, Borders, Chart, Clear, Dataset, GraphType, Paragraph, Wrap};

pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

pub fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "terminal too small: {}×{} (phasetop needs at least {MIN_WIDTH}×{MIN_HEIGHT}); training goes on",
            area.width, area.height
        );
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let [header, body, footer] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1), Constraint::Length(1)]).areas(area);
    draw_header(f, app, header);
    draw_body(f, app, body);
    draw_footer(f, app, footer);
    match &app.mode {
        Mode::Help => draw_help(f, app, area),
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

fn fmt_duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

fn fmt_step(s: u64) -> String {
    let digits = s.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(ch);
    }
    out
}

fn phase_index(v: &RunView, name: &str) -> usize {
    v.plan.iter().position(|p| p.name == name).unwrap_or(0)
}

fn draw_header(f: &mut Frame, app: &App, area: Rect) {
    let v = &app.view;
    let t = &app.theme;
    let replay_label;
    let (state, style) = match (v.ended, app.link, v.paused) {
        _ if app.player.is_some() => {
            let p = app.player.as_ref().expect("checked");
            // A log still being written is followed: the player waits at its end.
            let follow = if p.following() { " +live" } else { "" };
            let seeking = match p.pending_seek {
                Some(u64::MAX) => " → end (indexing)".to_string(),
                Some(s) => format!(" → {s} (indexing)"),
                None => String::new(),
            };
            replay_label = format!("REPLAY {} {}{follow}{seeking}", if p.playing { "▶" } else { "‖" }, p.speed_label());
            (replay_label.as_str(), t.accent)
        }
        (Some(RunStatus::Completed), _, _) => ("COMPLETED", t.ok),
        (Some(RunStatus::Stopped), _, _) => ("STOPPED", t.warn),
        (Some(RunStatus::Diverged), _, _) => ("DIVERGED", t.error),
        (Some(RunStatus::Failed), _, _) => ("FAILED", t.error),
        (Some(RunStatus::Running), _, _) | (None, Link::Live, false) => ("LIVE", t.ok),
        (None, Link::Live, true) => ("PAUSED", t.warn),
        (None, Link::Stale, _) => ("STALE", t.error),
        (None, Link::Ended, _) => ("NO HOST", t.warn),
    };
    // Segments in order of importance; the least important are dropped to fit, so the
    // header survives at 80 columns.
    let mut segments: Vec<Vec<Span>> =
        vec![vec![Span::styled(format!(" {state} "), style.add_modifier(Modifier::BOLD))]];
    // Damage comes right after the state: replaying a crashed run must say what it lost.
    if let Some(notice) = app.player.as_ref().and_then(|p| p.damage_short()) {
        segments.push(vec![Span::styled(notice, t.warn)]);
    }
    if let Some(p) = v.current_phase() {
        let i = phase_index(v, &p.name);
        let glyph = if app.ascii { "*" } else { "●" };
        segments.push(vec![
            Span::styled(format!("{glyph} {}", p.name), t.phase_fg(i)),
            Span::raw(format!(" ({}/{})", i + 1, v.plan.len().max(1))),
        ]);
    }
    let max = v.max_steps.map(|m| format!("/{}", fmt_step(m))).unwrap_or_default();
    segments.push(vec![Span::raw(format!("step {}{max}", fmt_step(v.step)))]);
    let rate = v.steps_per_s().unwrap_or(0.0);
    segments.push(vec![Span::raw(format!("{rate:.0} it/s"))]);
    let elapsed = (v.last_t - v.started_at).max(0.0);
    let eta = match (v.max_steps, rate > 0.0 && v.ended.is_none()) {
        (Some(m), true) if m > v.step => format!(" → ETA {}", fmt_duration((m - v.step) as f64 / rate)),
        _ => String::new(),
    };
    segments.push(vec![Span::raw(format!("{}{eta}", fmt_duration(elapsed)))]);
    let run: String = v.run_id.chars().take(32).collect();
    segments.push(vec![Span::raw(run)]);
    segments.push(vec![Span::raw(v.device.clone())]);
    segments.push(vec![Span::styled("phasetop", t.accent)]);
    let width = |segs: &[Vec<Span>]| -> usize {
        segs.iter().map(|s| s.iter().map(|x| x.width()).sum::<usize>()).sum::<usize>() + 3 * segs.len()
    };
    while segments.len() > 1 && width(&segments) > area.width as usize {
        segments.pop();
    }
    let mut spans = Vec::new();
    for (i, seg) in segments.into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" │ ", t.dim));
        }
        spans.extend(seg);
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_footer(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    if let (Some(p), false) = (&app.player, matches!(app.mode, Mode::Command { .. })) {
        return draw_replay_footer(f, app, p, area);
    }
    let line = match &app.mode {
        Mode::Command { input, .. } => {
            Line::from(vec![Span::styled(":", t.accent), Span::raw(input.clone()), Span::styled("▏", t.accent)])
        }
        _ => match &app.status {
            Some((msg, true)) => Line::from(Span::styled(msg.clone(), t.error)),
            Some((msg, false)) => Line::from(Span::raw(msg.clone())),
            None => {
                use super::keymap::Action as A;
                let k = |a| app.keymap.first_key(a).to_string();
                Line::from(Span::styled(
                    format!(
                        " {} help  {} switch  {} pause  {} checkpoint  {} log  +/- zoom  {} command  {} quit",
                        k(A::Help),
                        k(A::SwitchPhase),
                        k(A::Pause),
                        k(A::Checkpoint),
                        k(A::LogScale),
                        k(A::CommandLine),
                        k(A::Quit)
                    ),
                    t.dim,
                ))
            }
        },
    };
    f.render_widget(Paragraph::new(line), area);
}

/// The replay footer: the scrubber over half the width, the position, then the status
/// (or the replay keys).
fn draw_replay_footer(f: &mut Frame, app: &App, p: &super::replay::Player, area: Rect) {
    use super::keymap::Action as A;
    let t = &app.theme;
    let w = area.width as usize;
    let last = p.last_step().max(app.view.step);
    let mut spans = scrubber(app, (w / 2).max(10), app.view.step, last, &p.mark_steps());
    spans.push(Span::raw(format!(" {}/{} ", fmt_step(app.view.step), fmt_step(last))));
    spans.push(match &app.status {
        Some((msg, true)) => Span::styled(msg.clone(), t.error),
        Some((msg, false)) => Span::raw(msg.clone()),
        None => {
            let k = |a| app.keymap.first_key(a).to_string();
            Span::styled(
                format!(
                    " {} {} scrub  {} pacing  {} help  {} command  {} quit",
                    k(A::ScrubBack),
                    k(A::ScrubForward),
                    k(A::ToggleUniform),
                    k(A::Help),
                    k(A::CommandLine),
                    k(A::Quit)
                ),
                t.dim,
            )
        }
    });
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// Scrubber glyphs: (played track, track ahead, phase change, signal, position).
pub fn scrubber_glyphs(ascii: bool) -> [char; 5] {
    if ascii { ['=', '-', '|', '^', '#'] } else { ['━', '─', '┃', '▲', '●'] }
}

/// A `width`-cell bar over steps 0..=`last`: the track played so far, phase-change and
/// signal ticks, and the position (which wins a shared cell, then phase changes).
fn scrubber(app: &App, width: usize, pos: u64, last: u64, marks: &[(u64, MarkKind)]) -> Vec<Span<'static>> {
    let t = &app.theme;
    let [played, ahead, phase, signal, here] = scrubber_glyphs(app.ascii);
    let col = |s: u64| -> usize {
        if last == 0 { 0 } else { ((s.min(last) as f64 / last as f64) * (width - 1) as f64).round() as usize }
    };
    let at = col(pos);
    let mut cells: Vec<(char, Style)> =
        (0..width).map(|c| if c < at { (played, t.accent) } else { (ahead, t.dim) }).collect();
    for kind in [MarkKind::Signal, MarkKind::Phase] {
        for &(s, k) in marks.iter().filter(|m| m.1 == kind) {
            let glyph = if k == MarkKind::Phase { phase } else { signal };
            cells[col(s)] = (glyph, if k == MarkKind::Phase { t.ok } else { t.warn });
        }
    }
    cells[at] = (here, t.highlight);
    cells.into_iter().map(|(c, s)| Span::styled(c.to_string(), s)).collect()
}

fn draw_body(f: &mut Frame, app: &App, area: Rect) {
    let rows = Layout::vertical(app.layout.rows.iter().map(|r| Constraint::Fill(r.ratio))).split(area);
    let mut index = 0;
    for (row, rect) in app.layout.rows.iter().zip(rows.iter()) {
        let cells = Layout::horizontal(row.panels.iter().map(|c| Constraint::Fill(c.ratio))).split(*rect);
        for (cell, r) in row.panels.iter().zip(cells.iter()) {
            draw_panel(f, app, cell.panel, *r, index == app.focus);
            index += 1;
        }
    }
}

fn panel_block<'a>(app: &App, title: Line<'a>, focused: bool) -> Block<'a> {
    let b = Block::default().borders(Borders::ALL).title(title);
    let b = if app.ascii { b.border_set(symbols::border::PLAIN) } else { b.border_type(BorderType::Rounded) };
    b.border_style(if focused { app.theme.focus_border } else { app.theme.border })
}

fn draw_panel(f: &mut Frame, app: &App, panel: Panel, area: Rect, focused: bool) {
    match panel {
        Panel::Loss => draw_chart(f, app, area, focused, panel, &[("train", "train_loss"), ("val", "val_loss")]),
        Panel::Accuracy => draw_chart(f, app, area, focused, panel, &[("train", "train_acc"), ("val", "val_acc")]),
        Panel::Lr => draw_chart(f, app, area, focused, panel, &[("lr", "lr")]),
        Panel::Grad => draw_chart(f, app, area, focused, panel, &[("grad", "grad_norm"), ("dist", "dist_init")]),
        Panel::Diversity => {
            let metric = DIVERSITY_METRICS[app.diversity_metric];
            let layers: Vec<&String> = match app.diversity_layer {
                Some(i) => app.view.probe_layers.get(i).into_iter().collect(),
                None => app.view.probe_layers.iter().collect(),
            };
            let keys: Vec<(String, String)> = layers.iter().map(|l| (l.to_string(), format!("{l}/{metric}"))).collect();
            let refs: Vec<(&str, &str)> = keys.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            draw_chart(f, app, area, focused, panel, &refs)
        }
        Panel::Signals => draw_signals(f, app, area, focused),
        Panel::Plan => draw_plan(f, app, area, focused),
        Panel::Events => draw_events(f, app, area, focused),
    }
}

/// Debiased exponential moving average (as TensorBoard): the bias of the zero start is
/// divided out, so the first points are not pulled toward 0.
pub fn debiased_ema(values: &[f64], weight: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(values.len());
    let (mut acc, mut n) = (0.0, 0i32);
    for &v in values {
        n += 1;
        acc = acc * weight + (1.0 - weight) * v;
        out.push(acc / (1.0 - weight.powi(n)));
    }
    out
}

fn draw_chart(f: &mut Frame, app: &App, area: Rect, focused: bool, panel: Panel, series: &[(&str, &str)]) {
    let v = &app.view;
    let t = &app.theme;
    let (x0, x1) = app.x_range();
    let mut title = vec![Span::styled(format!(" {} ", panel.title()), t.accent)];
    let runs: Vec<&RunView> = match &app.compare {
        Some(c) => c.views(v),
        None => vec![v],
    };
    if let Some(c) = &app.compare {
        // Colour (or marker) names the run; within a run, dots set apart the 2nd series.
        let labels: Vec<&str> = series.iter().map(|(l, _)| *l).collect();
        if labels.len() > 1 {
            title.push(Span::styled(format!("{} (dots) ", labels.join("/")), t.dim));
        }
        for (i, name) in c.names.iter().enumerate() {
            title.push(Span::styled(
                format!("{} {name} ", compare::run_glyph(t, app.ascii, i)),
                compare::run_style(t, i),
            ));
        }
    } else {
        for (i, (label, _)) in series.iter().enumerate() {
            title.push(Span::styled(format!("{} {label} ", if app.ascii { "-" } else { "━" }), app.theme.series(i)));
        }
    }
    let mut flags = Vec::new();
    if app.smoothing > 0.0 {
        flags.push(format!("ema {:.2}", app.smoothing));
    }
    if app.log_y {
        flags.push("log".into());
    }
    if app.ignore_outliers {
        flags.push("clip 1–99%".into());
    }
    if panel == Panel::Diversity {
        flags.push(DIVERSITY_METRICS[app.diversity_metric].into());
    }
    if !flags.is_empty() {
        title.push(Span::styled(format!("({}) ", flags.join(", ")), t.dim));
    }
    if let Some(c) = app.cursor {
        let reads: Vec<String> = series
            .iter()
            .filter_map(|(label, key)| v.series.get(*key)?.value_at(c).map(|x| format!("{label} {}", fmt_num(x))))
            .collect();
        title.push(Span::styled(format!("@{}: {} ", fmt_step(c), reads.join("  ")), t.warn));
    }
    let block = panel_block(app, Line::from(title), focused);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if inner.height < 3 || inner.width < 12 {
        return;
    }
    let band_runs: Vec<usize> = match &app.compare {
        Some(c) => (0..runs.len()).filter(|&i| c.bands[i]).collect(),
        None => vec![0],
    };
    let band_rows = (band_runs.len() as u16).min(inner.height.saturating_sub(2));
    let [chart_area, band_area] = Layout::vertical([Constraint::Fill(1), Constraint::Length(band_rows)]).areas(inner);

    // Columns at the chart's horizontal resolution (braille has 2 dots per cell).
    let cols = (chart_area.width as usize).saturating_sub(8) * if app.ascii { 1 } else { 2 };
    let transform = |y: f64| if app.log_y { if y > 0.0 { Some(y.log10()) } else { None } } else { Some(y) };
    // (run, series number, points)
    type Points = (usize, usize, Vec<(f64, f64)>);
    let mut data: Vec<Points> = Vec::new();
    let mut ys: Vec<f64> = Vec::new();
    for (run, v) in runs.iter().enumerate() {
        for (k, (_, key)) in series.iter().enumerate() {
            let mut pts = Vec::new();
            if let Some(s) = v.series.get(*key) {
                let columns = s.columns(x0, x1, cols.max(1));
                if app.smoothing > 0.0 {
                    let means: Vec<f64> = columns.iter().map(|c| c.mean).collect();
                    for (c, y) in columns.iter().zip(debiased_ema(&means, app.smoothing)) {
                        if let Some(y) = transform(y) {
                            pts.push((c.step as f64, y));
                        }
                    }
                } else {
                    for c in &columns {
                        // Min then max per column, so spikes show as vertical strokes.
                        for y in [c.min, c.max] {
                            if let Some(y) = transform(y) {
                                pts.push((c.step as f64, y));
                            }
                        }
                    }
                }
            }
            ys.extend(pts.iter().map(|p| p.1));
            data.push((run, k, pts));
        }
    }
    if ys.is_empty() {
        f.render_widget(Paragraph::new(Span::styled("no data yet", t.dim)), chart_area);
    } else {
        let (lo, hi) = y_bounds(&mut ys, app.ignore_outliers);
        let datasets = data
            .iter()
            .map(|(run, k, pts)| {
                let (marker, graph, style) = if app.compare.is_some() {
                    let (m, g) = compare::run_marker(t, app.ascii, *run, *k);
                    (m, g, compare::run_style(t, *run))
                } else {
                    let m = if app.ascii { symbols::Marker::Dot } else { symbols::Marker::Braille };
                    (m, GraphType::Line, app.theme.series(*k))
                };
                Dataset::default().marker(marker).graph_type(graph).style(style).data(pts)
            })
            .collect();
        let label = |y: f64| if app.log_y { fmt_num(10f64.powf(y)) } else { fmt_num(y) };
        let chart = Chart::new(datasets).x_axis(Axis::default().bounds([x0 as f64, x1.max(x0 + 1) as f64])).y_axis(
            Axis::default()
                .bounds([lo, hi])
                .labels([Span::raw(label(lo)), Span::raw(label((lo + hi) / 2.0)), Span::raw(label(hi))])
                .style(t.dim),
        );
        f.render_widget(chart, chart_area);
    }
    let rows = Layout::vertical(vec![Constraint::Length(1); band_rows as usize]).split(band_area);
    for (row, &run) in rows.iter().zip(&band_runs) {
        if app.compare.is_some() && row.width > 1 {
            // Which run a band belongs to: its legend glyph and colour, left of the band.
            let tag = Span::styled(compare::run_glyph(t, app.ascii, run), compare::run_style(t, run));
            f.render_widget(Paragraph::new(tag), Rect { width: 1, ..*row });
            draw_band(f, app, runs[run], Rect { x: row.x + 1, width: row.width - 1, ..*row }, x0, x1);
        } else {
            draw_band(f, app, runs[run], *row, x0, x1);
        }
    }
}

/// y range of the shown values; with `clip`, the 1st–99th percentiles (outliers are
/// clipped to the frame, not hidden: the band says so in the title).
fn y_bounds(ys: &mut [f64], clip: bool) -> (f64, f64) {
    ys.sort_by(|a, b| a.total_cmp(b));
    let (mut lo, mut hi) = if clip && ys.len() >= 20 {
        (ys[ys.len() / 100], ys[ys.len() - 1 - ys.len() / 100])
    } else {
        (ys[0], ys[ys.len() - 1])
    };
    if (hi - lo).abs() < 1e-12 {
        lo -= 0.5f64.max(lo.abs() * 0.05);
        hi += 0.5f64.max(hi.abs() * 0.05);
    }
    let pad = (hi - lo) * 0.05;
    // Non-negative series (losses, accuracies, rates) never get a negative axis.
    let floor = if ys[0] >= 0.0 { 0.0 } else { f64::NEG_INFINITY };
    ((lo - pad).max(floor), hi + pad)
}

/// The phase band under a chart: each phase's span in its colour with its name where it
/// fits; ▲ where signals fired, ▼ where the operator issued commands, │ at the cursor.
fn draw_band(f: &mut Frame, app: &App, v: &RunView, area: Rect, x0: u64, x1: u64) {
    let w = area.width as usize;
    if w == 0 {
        return;
    }
    let col_of = |s: u64| -> Option<usize> {
        if s < x0 || s > x1 {
            return None;
        }
        Some((((s - x0) as f64 / (x1 - x0).max(1) as f64) * (w - 1) as f64).round() as usize)
    };
    let mut cells: Vec<(char, Style)> = vec![(' ', Style::default()); w];
    let mut marked = vec![false; w];
    let mut glyphs = Vec::new();
    for m in &v.markers {
        if let Some(c) = col_of(m.step) {
            let glyph = match (&m.kind, app.ascii) {
                (Mark::Signal, false) => '▲',
                (Mark::Signal, true) => '^',
                (Mark::Command, false) => '▼',
                (Mark::Command, true) => 'v',
            };
            marked[c] = true;
            glyphs.push((c, glyph));
        }
    }
    for p in &v.phases {
        let end = p.end.unwrap_or(v.step);
        if end < x0 || p.start > x1 {
            continue;
        }
        let (a, b) = (col_of(p.start.max(x0)).unwrap_or(0), col_of(end.min(x1)).unwrap_or(w - 1));
        let style = app.theme.phase(phase_index(v, &p.name));
        for cell in cells.iter_mut().take(b + 1).skip(a) {
            *cell = (' ', style);
        }
        // The label flows around markers, so neither hides the other.
        let mut col = a;
        for ch in p.name.chars() {
            while col <= b && marked[col] {
                col += 1;
            }
            if col > b {
                break;
            }
            cells[col].0 = ch;
            col += 1;
        }
    }
    for (c, g) in glyphs {
        cells[c].0 = g;
    }
    if let Some(c) = app.cursor.and_then(col_of) {
        cells[c] = (if app.ascii { '|' } else { '│' }, app.theme.warn);
    }
    let spans: Vec<Span> = cells.into_iter().map(|(c, s)| Span::styled(c.to_string(), s)).collect();
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_signals(f: &mut Frame, app: &App, area: Rect, focused: bool) {
    let v = &app.view;
    let t = &app.theme;
    let block = panel_block(app, Line::from(Span::styled(" signals ", t.accent)), focused);
    let mut lines = Vec::new();
    if let Some(s) = v.pending_suggestion() {
        let a = app.keymap.first_key(super::keymap::Action::Accept);
        let d = app.keymap.first_key(super::keymap::Action::Dismiss);
        lines.push(Line::from(Span::styled(
            format!(
                "{} suggestion: switch → {} ({})  [{a}]ccept [{d}]ismiss",
                if app.ascii { ">" } else { "▶" },
                s.to_phase,
                s.because
            ),
            t.warn.add_modifier(Modifier::REVERSED),
        )));
    }
    for s in v.signals.iter().rev().take(area.height as usize) {
        lines.push(Line::from(vec![
            Span::styled(format!("{:>9} ", fmt_step(s.step)), t.dim),
            Span::styled(format!("{:<11} ", s.detector), t.accent),
            Span::raw(format!("{:<12} {}", s.metric, s.message)),
        ]));
    }
    if lines.is_empty() {
        lines.push(Line::from(Span::styled("no signals yet", t.dim)));
    }
    f.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_plan(f: &mut Frame, app: &App, area: Rect, focused: bool) {
    let v = &app.view;
    let t = &app.theme;
    let block = panel_block(app, Line::from(Span::styled(" plan ", t.accent)), focused);
    let current = v.current_phase();
    let mut lines = Vec::new();
    for (i, p) in v.plan.iter().enumerate() {
        let spans_of: Vec<_> = v.phases.iter().filter(|s| s.name == p.name).collect();
        let is_current = current.is_some_and(|c| c.name == p.name);
        let done = !is_current && !spans_of.is_empty();
        let glyph = match (is_current, done, app.ascii) {
            (true, _, false) => "●",
            (true, _, true) => "*",
            (false, true, false) => "✓",
            (false, true, true) => "+",
            (false, false, false) => "○",
            (false, false, true) => "o",
        };
        let span_text = match spans_of.last() {
            Some(s) => format!("{} → {}", fmt_step(s.start), s.end.map_or("…".into(), fmt_step)),
            None => String::new(),
        };
        let until = match (&p.steps, &p.until) {
            (Some(n), Some(u)) => format!("steps = {n} or {u}"),
            (Some(n), None) => format!("steps = {n}"),
            (None, Some(u)) => format!("until {u}"),
            (None, None) => "until: manual".into(),
        };
        let mut spans = vec![
            Span::styled(format!("{glyph} {:<12}", p.name), t.phase_fg(i)),
            Span::raw(format!(" {span_text:<20} ")),
            Span::styled(until, t.dim),
        ];
        if let (true, Some(n), Some(c)) = (is_current, p.steps, current) {
            let done = v.step.saturating_sub(c.start).min(n);
            let width = 10;
            let filled = (done as f64 / n as f64 * width as f64).round() as usize;
            let (full, empty) = if app.ascii { ("#", ".") } else { ("█", "░") };
            spans.push(Span::styled(
                format!("  {}{}", full.repeat(filled), empty.repeat(width - filled)),
                t.phase_fg(i),
            ));
        }
        lines.push(Line::from(spans));
    }
    f.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_events(f: &mut Frame, app: &App, area: Rect, focused: bool) {
    let t = &app.theme;
    let block = panel_block(app, Line::from(Span::styled(" events ", t.accent)), focused);
    let lines: Vec<Line> = app
        .view
        .log
        .iter()
        .rev()
        .take(area.height as usize)
        .map(|r| {
            let style = match r.kind {
                "warn" | "command" | "suggest" => t.warn,
                "error" => t.error,
                "phase" | "signal" => t.accent,
                _ => Style::default(),
            };
            Line::from(vec![
                Span::styled(format!("{:>9} ", fmt_step(r.step)), t.dim),
                Span::styled(format!("{:<8}", r.kind), style),
                Span::raw(r.text.clone()),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines).block(block), area);
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
    let mut lines: Vec<Line> = app
        .keymap
        .help_rows()
        .into_iter()
        .map(|(keys, help)| Line::from(vec![Span::styled(format!("{keys:>16}  "), app.theme.accent), Span::raw(help)]))
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        "  : commands: switch PHASE, pause, resume, stop, checkpoint, set lr=…,",
        app.theme.dim,
    )));
    lines.push(Line::from(Span::styled(
        "    accept, dismiss, goto STEP, smooth 0.9, layout NAME   (Tab completes)",
        app.theme.dim,
    )));
    if app.player.is_some() {
        lines.push(Line::from(Span::styled(
            "  replay: space play/pause  < > speed  , . step  [ ] phase change  { } signal  g G start/end  :goto STEP",
            app.theme.dim,
        )));
        lines.push(Line::from(Span::styled(
            "          footer: the scrubber (━ played, ┃ phase change, ▲ signal, ● here; ascii = | ^ #)",
            app.theme.dim,
        )));
    }
    lines.push(Line::from(Span::styled("  any key closes this help", app.theme.dim)));
    draw_dialog(f, app, area, "help", lines);
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
    lines.push(Line::from(Span::styled(" ↑/↓ choose, Enter confirm, Esc cancel", app.theme.dim)));
    draw_dialog(f, app, area, "switch phase", lines);
}
