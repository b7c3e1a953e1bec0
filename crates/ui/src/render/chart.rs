//! The charts: series drawn over the steps in view, their y range and step labels.

use super::bands::draw_band;
use super::parts::*;

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

pub(super) fn draw_chart(f: &mut Frame, app: &App, area: Rect, focused: bool, panel: Panel, series: &[(&str, &str)]) {
    let v = &app.view;
    let t = &app.theme;
    let opts = app.opts(panel);
    let (x0, x1) = app.x_range();
    let line_glyph = if app.ascii { "-" } else { "━" };
    let runs: Vec<&RunView> = match &app.compare {
        Some(c) => c.views(v),
        None => vec![v],
    };
    // The cursor's step and readings: (priority, text).
    let mut cursor_segs: Vec<(u8, String)> = Vec::new();
    if let Some(c) = app.charts.cursor {
        cursor_segs.push((9, format!("@{} ", fmt::step(c))));
        // Each reading is its own segment: the last ones go first when room is short.
        let reads: Vec<String> = series
            .iter()
            .filter_map(|(label, key)| v.series.get(*key)?.value_at(c).map(|x| format!("{label} {} ", fmt::num(x))))
            .collect();
        let n = reads.len() as u8;
        for (i, r) in reads.into_iter().enumerate() {
            cursor_segs.push((8 - (i as u8).min(n).min(4), r));
        }
    }
    let avail = (area.width as usize).saturating_sub(2);
    let cursor_w: usize = cursor_segs.iter().map(|(_, text)| text.chars().count()).sum();
    // The title: its name always; the cursor's step next (never cut), then its
    // readings, the legend, and the flags, each dropped whole when there is no room.
    // The diversity chart's metric (cycled by `m`) is part of its name, never dropped.
    let name = match panel {
        // Narrow, "diversity" alone leaves room for the legend.
        Panel::Diversity => {
            let title = if area.width < 72 { "diversity" } else { panel.title() };
            format!(" {title}: {} ", DIVERSITY_METRICS[app.charts.diversity_metric])
        }
        // The learning rate's reading (often `2.50e-4`) and the cursor's step leave no
        // room for "learning rate" in a narrow chart: "lr" keeps the reading.
        Panel::Lr if (" learning rate ".len() + cursor_w) > avail => " lr ".to_string(),
        _ => format!(" {} ", panel.title()),
    };
    let mut segs: Vec<(u8, Vec<Span>)> = vec![(u8::MAX, vec![Span::styled(name, t.accent)])];
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
            let glyph = if colourless(app) { series_marker(app, i).1 } else { line_glyph };
            legend.push(Span::styled(format!("{glyph} {label} "), app.theme.series(i)));
        }
    }
    segs.push((3, legend));
    let mut flags = Vec::new();
    if opts.smoothing > 0.0 {
        flags.push(format!("ema {}", fmt::weight(opts.smoothing)));
    }
    if opts.log_y {
        flags.push("log".into());
    }
    if opts.clip {
        flags.push(if app.ascii { "clip 1-99%".into() } else { "clip 1–99%".into() });
    }
    if !flags.is_empty() {
        segs.push((2, vec![Span::styled(format!("({}) ", flags.join(", ")), t.dim)]));
    }
    for (p, text) in cursor_segs {
        segs.push((p, vec![Span::styled(text, t.warn)]));
    }
    let title = fit_segments(segs, avail);
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
                } else if colourless(app) {
                    // No colour: a series' marker tells it apart (as the legend says).
                    (series_marker(app, *k).0, GraphType::Line, app.theme.series(*k))
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
    if let Some(c) = app.charts.cursor.filter(|c| (x0..=x1).contains(c)) {
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

/// Without colour (`NO_COLOR`/mono, or `--ascii`), series of one chart differ by marker.
fn colourless(app: &App) -> bool {
    app.ascii || app.theme.kind == crate::theme::ThemeKind::Mono
}

/// The marker of a chart's `k`-th series without colour, and its legend glyph (what the
/// marker draws; `--ascii` maps both the same way).
fn series_marker(app: &App, k: usize) -> (symbols::Marker, &'static str) {
    const UNICODE: [(symbols::Marker, &str); 3] =
        [(symbols::Marker::Braille, "⣿"), (symbols::Marker::Dot, "•"), (symbols::Marker::Block, "█")];
    const ASCII: [(symbols::Marker, &str); 3] =
        [(symbols::Marker::Dot, "*"), (symbols::Marker::Block, "#"), (symbols::Marker::Bar, "=")];
    if app.ascii { ASCII[k % 3] } else { UNICODE[k % 3] }
}
