//! Drawing: a pure function of the [`App`] onto a ratatui frame. Chart cost depends on
//! the chart's width, not on the history length (see `series.rs`).

use super::app::{App, DIVERSITY_METRICS, Link, Mode};
use super::compare;
use super::fmt;
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
    app.small.set(app.layout.is_small(area.height));
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
    if app.ascii {
        asciify(f.buffer_mut());
    }
}

/// `--ascii` means ASCII only: what the widgets draw themselves (borders, axis lines,
/// chart dots, arrows in event text) is mapped to ASCII after drawing.
fn asciify(buf: &mut ratatui::buffer::Buffer) {
    for cell in buf.content.iter_mut() {
        let sym = cell.symbol();
        if sym.is_ascii() {
            continue;
        }
        let c = sym.chars().next().unwrap_or(' ');
        let a = match c {
            '─' | '━' | '═' | '–' | '—' | '┄' | '╌' => '-',
            '│' | '┃' | '║' | '▏' | '‖' | '┆' => '|',
            '┌' | '┐' | '└' | '┘' | '╭' | '╮' | '╰' | '╯' | '├' | '┤' | '┬' | '┴' | '┼' => {
                '+'
            }
            '•' | '●' | '·' | '∙' => '*',
            '█' | '▓' | '▒' => '#',
            '▄' | '▀' | '▁' => '=',
            '░' => '.',
            '▲' => '^',
            '▼' => 'v',
            '▶' | '→' | '⟶' => '>',
            '←' => '<',
            '…' => '~',
            '×' => 'x',
            '✓' => '+',
            '✗' => 'x',
            '○' => 'o',
            '\u{2800}'..='\u{28FF}' => '.',
            _ => '?',
        };
        cell.set_char(a);
    }
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
            let (play, pause) = if app.ascii { (">", "||") } else { ("▶", "‖") };
            replay_label =
                format!("REPLAY {} {}{follow}{seeking}", if p.playing { play } else { pause }, p.speed_label());
            (replay_label.as_str(), t.accent)
        }
        (Some(RunStatus::Completed), _, _) => ("COMPLETED", t.ok),
        (Some(RunStatus::Stopped), _, _) => ("STOPPED", t.warn),
        (Some(RunStatus::Diverged), _, _) => ("DIVERGED", t.error),
        (Some(RunStatus::Failed), _, _) => ("FAILED", t.error),
        (Some(RunStatus::Running), _, _) | (None, Link::Live, false) => ("LIVE", t.ok),
        (None, Link::Live, true) => ("PAUSED", t.warn),
        (None, Link::Stale, _) => ("STALE", t.error),
        (None, Link::Gone, _) => ("FAILED", t.error),
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
    let max = v.max_steps.map(|m| format!("/{}", fmt::step(m))).unwrap_or_default();
    segments.push(vec![Span::raw(format!("step {}{max}", fmt::step(v.step)))]);
    // No lr chart on screen (the small arrangement): the lr is a number here.
    if !app.panels().contains(&Panel::Lr)
        && let Some((_, lr)) = v.series.get("lr").and_then(|s| s.last())
    {
        segments.push(vec![Span::raw(format!("lr {}", fmt::num(lr)))]);
    }
    let rate = v.steps_per_s().unwrap_or(0.0);
    let mut rate_seg = vec![Span::raw(format!("{} it/s", fmt::rate(rate)))];
    if v.ended.is_none()
        && !v.paused
        && let Some((_, peak)) = v.rate.starved()
    {
        rate_seg.push(Span::styled(format!(" starved (was {})", fmt::rate(peak)), t.warn));
    }
    segments.push(rate_seg);
    let elapsed = (v.last_t - v.started_at).max(0.0);
    let eta = match (v.max_steps, rate > 0.0 && v.ended.is_none()) {
        (Some(m), true) if m > v.step => {
            format!(" {} ETA {}", if app.ascii { "->" } else { "→" }, fmt::duration((m - v.step) as f64 / rate))
        }
        _ => String::new(),
    };
    segments.push(vec![Span::raw(format!("{}{eta}", fmt::duration(elapsed)))]);
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
    let w = area.width as usize;
    let line = match &app.mode {
        Mode::Command { input, .. } => {
            Line::from(vec![Span::styled(":", t.accent), Span::raw(input.clone()), Span::styled("▏", t.accent)])
        }
        _ => match &app.status {
            Some((msg, true)) => Line::from(Span::styled(fmt::fit(msg, w, app.ascii), t.error)),
            Some((msg, false)) => Line::from(Span::raw(fmt::fit(msg, w, app.ascii))),
            None => {
                let mut spans = Vec::new();
                let keys = footer_keys(app);
                if app.is_live() && app.view.pending_suggestion().is_some() {
                    // What to do with the suggestion comes first, in the warning colour.
                    use super::keymap::Action as A;
                    let k = |a| app.keymap.first_key(a).to_string();
                    spans.push(Span::styled(format!(" {} accept  {} dismiss ", k(A::Accept), k(A::Dismiss)), t.warn));
                }
                let used: usize = spans.iter().map(|s| s.width()).sum();
                spans.push(Span::styled(fmt::fit(&keys, w.saturating_sub(used), app.ascii), t.dim));
                Line::from(spans)
            }
        },
    };
    f.render_widget(Paragraph::new(line), area);
}

/// The footer's key hints: only keys that do something here (a run that is not live
/// has no pause, switch or checkpoint).
fn footer_keys(app: &App) -> String {
    use super::keymap::Action as A;
    let k = |a| app.keymap.first_key(a).to_string();
    let mut parts = vec![format!("{} help", k(A::Help))];
    if app.is_live() {
        parts.push(format!("{} switch", k(A::SwitchPhase)));
        parts.push(format!("{} pause", k(A::Pause)));
        parts.push(format!("{} checkpoint", k(A::Checkpoint)));
    }
    match app.focused_panel() {
        Some(p) if p.is_list() => parts.push("j/k select  Enter open".into()),
        _ => parts.push(format!("{} log", k(A::LogScale))),
    }
    parts.push("+/- zoom".into());
    parts.push(format!("{} command", k(A::CommandLine)));
    parts.push(format!("{} quit", k(A::Quit)));
    format!(" {}", parts.join("  "))
}

/// The replay footer: the scrubber over half the width, the position, then the status
/// (or the replay keys).
fn draw_replay_footer(f: &mut Frame, app: &App, p: &super::replay::Player, area: Rect) {
    use super::keymap::Action as A;
    let t = &app.theme;
    let w = area.width as usize;
    // The timeline spans every compared run: a longer second run's tail is reachable.
    let (now, last) = (app.timeline_step(), app.timeline_last());
    let mut spans = scrubber(app, (w / 2).max(10), now, last, &p.mark_steps());
    spans.push(Span::raw(format!(" {}/{} ", fmt::step(now), fmt::step(last))));
    let room = w.saturating_sub(spans.iter().map(|s| s.width()).sum());
    spans.push(match &app.status {
        Some((msg, true)) => Span::styled(fmt::fit(msg, room, app.ascii), t.error),
        Some((msg, false)) => Span::raw(fmt::fit(msg, room, app.ascii)),
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
    let arrangement = app.layout.rows_for(app.small.get());
    let rows =
        Layout::vertical(arrangement.iter().map(|r| r.height.map_or(Constraint::Fill(r.ratio), Constraint::Length)))
            .split(area);
    let mut index = 0;
    for (row, rect) in arrangement.iter().zip(rows.iter()) {
        let cells = Layout::horizontal(row.panels.iter().map(|c| Constraint::Fill(c.ratio))).split(*rect);
        for (cell, r) in row.panels.iter().zip(cells.iter()) {
            draw_panel(f, app, cell.panel, *r, index == app.focus);
            index += 1;
        }
    }
}

const ASCII_BORDER: symbols::border::Set = symbols::border::Set {
    top_left: "+",
    top_right: "+",
    bottom_left: "+",
    bottom_right: "+",
    vertical_left: "|",
    vertical_right: "|",
    horizontal_top: "-",
    horizontal_bottom: "-",
};

pub(super) fn panel_block<'a>(app: &App, title: Line<'a>, focused: bool) -> Block<'a> {
    let b = Block::default().borders(Borders::ALL).title(title);
    let b = if app.ascii { b.border_set(ASCII_BORDER) } else { b.border_type(BorderType::Rounded) };
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
        Panel::System => super::system::draw(f, app, area, focused),
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

/// Spans that fit `width` cells: segments are dropped whole, least important first
/// (each segment is (priority, spans); a higher priority is kept longer), and the kept
/// ones stay in their order.
fn fit_segments<'a>(mut segs: Vec<(u8, Vec<Span<'a>>)>, width: usize) -> Vec<Span<'a>> {
    let w = |segs: &[(u8, Vec<Span>)]| segs.iter().flat_map(|s| s.1.iter()).map(|s| s.width()).sum::<usize>();
    while w(&segs) > width {
        let Some(lowest) = segs.iter().enumerate().min_by_key(|(i, s)| (s.0, usize::MAX - i)).map(|(i, _)| i) else {
            break;
        };
        if segs[lowest].0 == u8::MAX {
            break;
        }
        segs.remove(lowest);
    }
    segs.into_iter().flat_map(|s| s.1).collect()
}

/// The natural range of a bounded metric, by name: accuracies [0, 1], cosines [-1, 1],
/// the probes' diversity (1 − mean cosine) [0, 2]. An axis never goes past it.
pub fn natural_bounds(key: &str) -> Option<(f64, f64)> {
    let leaf = key.rsplit('/').next().unwrap_or(key);
    if leaf.ends_with("acc") || leaf.ends_with("accuracy") {
        Some((0.0, 1.0))
    } else if leaf == "mean_cos" || key.starts_with("grad_cos") || leaf.ends_with("cosine") {
        Some((-1.0, 1.0))
    } else if leaf == "diversity" {
        // 1 − mean cosine: at most 1 + 1/(n − 1) over n samples, 2 for two.
        Some((0.0, 2.0))
    } else {
        None
    }
}

fn draw_chart(f: &mut Frame, app: &App, area: Rect, focused: bool, panel: Panel, series: &[(&str, &str)]) {
    let v = &app.view;
    let t = &app.theme;
    let opts = app.opts(panel);
    let (x0, x1) = app.x_range();
    let line_glyph = if app.ascii { "-" } else { "━" };
    let runs: Vec<&RunView> = match &app.compare {
        Some(c) => c.views(v),
        None => vec![v],
    };
    // The title: its name always; the cursor's step next (never cut), then its
    // readings, the legend, and the flags, each dropped whole when there is no room.
    let mut segs: Vec<(u8, Vec<Span>)> = vec![(u8::MAX, vec![Span::styled(format!(" {} ", panel.title()), t.accent)])];
    let mut legend = Vec::new();
    if let Some(c) = &app.compare {
        // Colour (or marker) names the run; within a run, dots set apart the 2nd series.
        let labels: Vec<&str> = series.iter().map(|(l, _)| *l).collect();
        if labels.len() > 1 {
            legend.push(Span::styled(format!("{} (dots) ", labels.join("/")), t.dim));
        }
        for (i, name) in c.names.iter().enumerate() {
            legend.push(Span::styled(
                format!("{} {name} ", compare::run_glyph(t, app.ascii, i)),
                compare::run_style(t, i),
            ));
        }
    } else {
        for (i, (label, _)) in series.iter().enumerate() {
            legend.push(Span::styled(format!("{line_glyph} {label} "), app.theme.series(i)));
        }
    }
    segs.push((3, legend));
    let mut flags = Vec::new();
    if opts.smoothing > 0.0 {
        flags.push(format!("ema {:.2}", opts.smoothing));
    }
    if opts.log_y {
        flags.push("log".into());
    }
    if opts.clip {
        flags.push(if app.ascii { "clip 1-99%".into() } else { "clip 1–99%".into() });
    }
    if panel == Panel::Diversity {
        flags.push(DIVERSITY_METRICS[app.diversity_metric].into());
    }
    if !flags.is_empty() {
        segs.push((2, vec![Span::styled(format!("({}) ", flags.join(", ")), t.dim)]));
    }
    if let Some(c) = app.cursor {
        segs.push((9, vec![Span::styled(format!("@{} ", fmt::step(c)), t.warn)]));
        // Each reading is its own segment: the last ones go first when room is short.
        let reads: Vec<String> = series
            .iter()
            .filter_map(|(label, key)| v.series.get(*key)?.value_at(c).map(|x| format!("{label} {} ", fmt::num(x))))
            .collect();
        let n = reads.len() as u8;
        for (i, r) in reads.into_iter().enumerate() {
            segs.push((8 - (i as u8).min(n).min(4), vec![Span::styled(r, t.warn)]));
        }
    }
    let title = fit_segments(segs, (area.width as usize).saturating_sub(2));
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
    let transform = |y: f64| if opts.log_y { if y > 0.0 { Some(y.log10()) } else { None } } else { Some(y) };
    // (run, series number, points)
    type Points = (usize, usize, Vec<(f64, f64)>);
    let mut data: Vec<Points> = Vec::new();
    let mut ys: Vec<f64> = Vec::new();
    // The chart's natural bounds: the union of its series' (all must have one).
    let mut natural: Option<(f64, f64)> = None;
    for (k, (_, key)) in series.iter().enumerate() {
        natural = match (natural_bounds(key), natural, k) {
            (Some(b), None, 0) => Some(b),
            (Some(b), Some(n), _) => Some((b.0.min(n.0), b.1.max(n.1))),
            _ => None,
        };
    }
    for (run, v) in runs.iter().enumerate() {
        for (k, (_, key)) in series.iter().enumerate() {
            let mut pts = Vec::new();
            if let Some(s) = v.series.get(*key) {
                let columns = s.columns(x0, x1, cols.max(1));
                if opts.smoothing > 0.0 {
                    let means: Vec<f64> = columns.iter().map(|c| c.mean).collect();
                    for (c, y) in columns.iter().zip(debiased_ema(&means, opts.smoothing)) {
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
        let natural = natural.map(|(a, b)| {
            if opts.log_y { (if a > 0.0 { a.log10() } else { f64::NEG_INFINITY }, b.log10()) } else { (a, b) }
        });
        let yb = y_bounds(&mut ys, opts.clip, natural);
        let (lo, hi) = (yb.lo, yb.hi);
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
        // Labels in at most a third of the width (ratatui's limit), at a precision that
        // fits: a label is a whole number or nothing.
        let at = [lo, (lo + hi) / 2.0, hi];
        let shown: Vec<f64> = at.iter().map(|&y| if opts.log_y { 10f64.powf(y) } else { y }).collect();
        let label_w = (chart_area.width as usize / 3).max(1);
        let labels = if yb.flat.is_some() {
            // One label, the level, in the middle: three labels of a ±5 % range would
            // round to the same number at narrow widths.
            let mid = fmt::num_fit(shown[1], label_w).unwrap_or_default();
            vec![String::new(), mid, String::new()]
        } else if opts.log_y {
            fmt::axis_labels_log(&shown, label_w)
        } else {
            fmt::axis_labels(&shown, label_w)
        };
        let chart = Chart::new(datasets).x_axis(Axis::default().bounds([x0 as f64, x1.max(x0 + 1) as f64])).y_axis(
            Axis::default().bounds([lo, hi]).labels(labels.into_iter().map(Span::raw).collect::<Vec<_>>()).style(t.dim),
        );
        f.render_widget(chart, chart_area);
        if let Some(level) = yb.flat {
            // Say so: a flat line in a small symmetric range is not a trend.
            let shown = if opts.log_y { 10f64.powf(level) } else { level };
            let long = format!(" flat at {} ", fmt::num(shown));
            let note = if chart_area.width as usize > long.chars().count() + 8 { long } else { " flat ".into() };
            let w = note.chars().count() as u16;
            if chart_area.width > w + 6 {
                let r = Rect { x: chart_area.right() - w, y: chart_area.y, width: w, height: 1 };
                f.render_widget(Paragraph::new(Span::styled(note, t.dim)), r);
            }
        }
        draw_step_labels(f, app, area, inner, x0, x1);
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

/// Step labels on the chart's bottom border: the first and last step in view, and the
/// cursor's where it is (each whole, or left out when they would touch).
fn draw_step_labels(f: &mut Frame, app: &App, area: Rect, inner: Rect, x0: u64, x1: u64) {
    let t = &app.theme;
    let y = area.bottom().saturating_sub(1);
    let (left, right) = (inner.x as usize, inner.right() as usize);
    if right <= left + 2 {
        return;
    }
    let first = format!(" {} ", fmt::step(x0));
    let last = format!(" {} ", fmt::step(x1));
    // (start column, text, style)
    let mut labels: Vec<(usize, String, Style)> = Vec::new();
    let lw = last.chars().count();
    if right - left >= lw {
        labels.push((right - lw, last, t.dim));
    }
    let fw = first.chars().count();
    if labels.first().is_none_or(|l| left + fw < l.0) {
        labels.push((left, first, t.dim));
    }
    if let Some(c) = app.cursor.filter(|c| (x0..=x1).contains(c)) {
        // The band's column of the cursor (the band spans the inner width).
        let w = right - left;
        let col = left + (((c - x0) as f64 / (x1 - x0).max(1) as f64) * (w - 1) as f64).round() as usize;
        let text = format!("@{}", fmt::step(c));
        let tw = text.chars().count();
        let start = col.saturating_sub(tw / 2).clamp(left, right.saturating_sub(tw));
        let clear = labels.iter().all(|(s, l, _)| start + tw < *s || s + l.chars().count() < start);
        if clear {
            labels.push((start, text, t.warn));
        }
    }
    for (x, text, style) in labels {
        let w = text.chars().count() as u16;
        f.render_widget(Paragraph::new(Span::styled(text, style)), Rect { x: x as u16, y, width: w, height: 1 });
    }
}

/// A chart's y range.
struct YBounds {
    lo: f64,
    hi: f64,
    /// The level of a flat series (shown in a small symmetric range).
    flat: Option<f64>,
}

/// y range of the shown values; with `clip`, the 1st–99th percentiles (outliers are
/// clipped to the frame, not hidden: the band says so in the title). A series that
/// moves by less than 0.1 % of its level is flat: it gets ±5 % around its level (not a
/// range that magnifies rounding noise to the full height), and `natural` bounds
/// (accuracy's [0, 1]) are never exceeded.
fn y_bounds(ys: &mut [f64], clip: bool, natural: Option<(f64, f64)>) -> YBounds {
    ys.sort_by(|a, b| a.total_cmp(b));
    let (lo, hi) = if clip && ys.len() >= 20 {
        (ys[ys.len() / 100], ys[ys.len() - 1 - ys.len() / 100])
    } else {
        (ys[0], ys[ys.len() - 1])
    };
    let level = (lo + hi) / 2.0;
    let scale = lo.abs().max(hi.abs());
    let flat = hi - lo <= 1e-3 * scale || hi - lo < 1e-12;
    let (mut lo, mut hi) = if flat {
        let half = if scale > 0.0 { 0.05 * scale } else { 1.0 };
        (level - half, level + half)
    } else {
        let pad = (hi - lo) * 0.05;
        (lo - pad, hi + pad)
    };
    // Non-negative series (losses, accuracies, rates) never get a negative axis.
    if ys[0] >= 0.0 && !flat {
        lo = lo.max(0.0);
    }
    if let Some((a, b)) = natural {
        // Inside the natural range; a flat range keeps its width, moved inside.
        let width = hi - lo;
        if hi > b {
            hi = b;
            if flat {
                lo = (b - width).max(a);
            }
        }
        if lo < a {
            lo = a;
            if flat {
                hi = (a + width).min(b);
            }
        }
        lo = lo.max(a);
        hi = hi.min(b);
    }
    if hi <= lo {
        hi = lo + 1e-12_f64.max(lo.abs() * 1e-6);
    }
    YBounds { lo, hi, flat: flat.then_some(level) }
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
        // The label goes where there is room: the first stretch of the span without a
        // marker that holds the whole name, else the widest one (the name cut, with a
        // mark); a marker never overwrites a letter, and a name is never split by one.
        let mut runs: Vec<(usize, usize)> = Vec::new();
        let mut start = None;
        // One column past the span closes the last stretch, hence the index loop.
        #[allow(clippy::needless_range_loop)]
        for c in a..=b + 1 {
            let free = c <= b && !marked[c];
            match (free, start) {
                (true, None) => start = Some(c),
                (false, Some(s0)) => {
                    runs.push((s0, c - s0));
                    start = None;
                }
                _ => {}
            }
        }
        let len = p.name.chars().count();
        let best = runs.iter().find(|r| r.1 >= len).or_else(|| runs.iter().max_by_key(|r| r.1)).copied();
        if let Some((col, room)) = best {
            let label: String = if room >= len {
                p.name.clone()
            } else if room >= 3 {
                let cut: String = p.name.chars().take(room - 1).collect();
                format!("{cut}{}", if app.ascii { '~' } else { '…' })
            } else {
                String::new()
            };
            for (i, ch) in label.chars().enumerate() {
                cells[col + i].0 = ch;
            }
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

/// The rows of a list panel that fit `height`, newest first, and which of them (its
/// index in `rows`) is selected: the newest rows, or a window holding the selection.
fn list_window(app: &App, panel: Panel, n: usize, height: usize) -> (Vec<usize>, Option<usize>) {
    let sel = app.selected.get(&panel).copied().filter(|&i| i < n);
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

fn draw_signals(f: &mut Frame, app: &App, area: Rect, focused: bool) {
    let v = app.rows_view();
    let t = &app.theme;
    let width = area.width.saturating_sub(2) as usize;
    let height = area.height.saturating_sub(2) as usize;
    let (tri, arrow) = if app.ascii { ("^", "->") } else { ("▲", "→") };
    let mut lines = Vec::new();
    if let Some(s) = v.pending_suggestion().filter(|_| app.is_live()) {
        let a = app.keymap.first_key(super::keymap::Action::Accept);
        let d = app.keymap.first_key(super::keymap::Action::Dismiss);
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
        let switch = app.is_live().then(|| app.keymap.first_key(super::keymap::Action::SwitchPhase));
        let gist = super::app::signal_gist(&s.detector, &s.metric, s.step, &s.message, switch, app.ascii);
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

fn draw_plan(f: &mut Frame, app: &App, area: Rect, focused: bool) {
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

fn draw_events(f: &mut Frame, app: &App, area: Rect, focused: bool) {
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

/// A list panel's name; comparing, with the run whose rows it shows (`r` cycles).
pub(super) fn rows_title(app: &App, name: &str) -> String {
    match app.rows_run_name() {
        Some(run) => format!("{name} · {run}"),
        None => name.to_string(),
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
    use super::keymap::Section;
    // Every key from the keymap's table, one section per mode: those that work here.
    let keep = |sec: Section, a| match sec {
        Section::Dashboard => app.action_available(a),
        Section::Replay => app.player.is_some(),
        Section::Quit => app.is_live(),
        Section::Picker | Section::Confirm => app.is_live(),
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
        if section == Section::Replay {
            lines.push(dim(
                "          footer: the scrubber (━ played, ┃ phase change, ▲ signal, ● here; ascii = | ^ #)",
            ));
        }
    }
    lines.push(Line::from(""));
    lines
        .push(dim("  charts: ▲ a signal fired, ▼ an operator command, │ the cursor; l o S A act on the focused chart"));
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
    app.help_max.set(max);
    let top = app.help_scroll.min(max);
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

/// A plan entry's mark: the current phase, one that has run, one still to come.
fn plan_glyph(current: bool, done: bool, ascii: bool) -> &'static str {
    match (current, done, ascii) {
        (true, _, false) => "●",
        (true, _, true) => "*",
        (false, true, false) => "✓",
        (false, true, true) => "+",
        (false, false, false) => "○",
        (false, false, true) => "o",
    }
}
