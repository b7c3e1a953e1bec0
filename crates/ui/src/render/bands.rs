//! Markers along the steps: the phase band under each chart and the replay scrubber.

use super::parts::*;

/// Scrubber glyphs: (played track, track ahead, phase change, signal, position).
pub fn scrubber_glyphs(ascii: bool) -> [char; 5] {
    if ascii { ['=', '-', '|', '^', '#'] } else { ['━', '─', '┃', '▲', '●'] }
}

/// A `width`-cell bar over steps 0..=`last`: the track played so far, phase-change and
/// signal ticks, and the position (which wins a shared cell, then phase changes).
pub(super) fn scrubber(app: &App, width: usize, pos: u64, last: u64, marks: &[(u64, MarkKind)]) -> Vec<Span<'static>> {
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

/// The phase band under a chart: each phase's span in its colour with its name where it
/// fits; ▲ where signals fired, ▼ where the operator issued commands, │ at the cursor.
pub(super) fn draw_band(f: &mut Frame, app: &App, v: &RunView, area: Rect, x0: u64, x1: u64) {
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
    if let Some(c) = app.charts.cursor.and_then(col_of) {
        cells[c] = (if app.ascii { '|' } else { '│' }, app.theme.warn);
    }
    let spans: Vec<Span> = cells.into_iter().map(|(c, s)| Span::styled(c.to_string(), s)).collect();
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}
