//! Drawing: a pure function of the [`App`] onto a ratatui frame. Chart cost depends on
//! the chart's width, not on the history length (see `model/series.rs`).

mod bands;
mod chart;
mod console;
mod dialogs;
mod panels;
mod parts;
pub mod system;

use bands::scrubber;
pub use bands::scrubber_glyphs;
use chart::draw_chart;
pub use chart::{debiased_ema, natural_bounds};
use panels::{draw_events, draw_plan, draw_signals};

use parts::*;

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
    dialogs::draw_overlay(f, app, area);
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

/// A player's transport in words: playing or paused, the speed, and a seek that waits
/// for the index.
fn transport_label(app: &App, p: &crate::player::replay::Player) -> String {
    let seeking = match (p.pending_seek, p.pending_mark) {
        (Some(u64::MAX), _) => " → end (indexing)".to_string(),
        (Some(s), _) => format!(" → {} (indexing)", fmt::step(s)),
        (None, Some(_)) => " → mark (indexing)".to_string(),
        (None, None) => String::new(),
    };
    let (play, pause) = if app.ascii { (">", "||") } else { ("▶", "‖") };
    // Compared runs playing on past the first run's end are playing, though its own
    // player has stopped there.
    let playing = p.playing || app.compare.as_ref().is_some_and(|c| c.playing_on || c.play_through);
    format!("{} {}{seeking}", if playing { play } else { pause }, p.speed_label())
}

fn draw_header(f: &mut Frame, app: &App, area: Rect) {
    let v = &app.view;
    let live = app.live_view();
    let t = &app.theme;
    let replay_label;
    let (state, style) = match (live.ended, app.link, live.paused) {
        _ if app.is_replay() => {
            let p = app.player.as_ref().expect("checked");
            // A log still being written is followed: the player waits at its end.
            let follow = if p.following() { " +live" } else { "" };
            replay_label = format!("REPLAY {}{follow}", transport_label(app, p));
            (replay_label.as_str(), t.accent)
        }
        // A live run's history: say so first, with where the live run is and the key
        // that goes back to it.
        _ if app.in_history() => {
            let p = app.player.as_ref().expect("checked");
            let back = app.keymap.first_key(crate::keymap::Action::GotoEnd);
            let (at, to) = if live.ended.is_some() { ("run ended at", "the end") } else { ("live at", "live") };
            replay_label = format!(
                "HISTORY {} · {at} step {} · {back} back to {to}",
                transport_label(app, p),
                fmt::step(live.step)
            );
            (replay_label.as_str(), t.warn)
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
    // A remote run says where it lives, right after its state.
    if let Some(host) = &app.remote {
        segments.push(vec![Span::styled(format!("@{host}"), t.accent)]);
    }
    // Why a run failed or diverged comes right after the state, at any width.
    if matches!(live.ended, Some(RunStatus::Failed | RunStatus::Diverged))
        && let Some(why) = live.end_message.as_deref().and_then(|m| m.lines().next()).filter(|m| !m.is_empty())
    {
        segments.push(vec![Span::styled(fmt::fit(why, (area.width as usize / 3).max(12), app.ascii), t.error)]);
    }
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
    // A rate and an ETA only while the run trains: never stale numbers on a paused, ended
    // or unreachable run.
    let training = v.ended.is_none() && !v.paused && (app.is_replay() || app.link == Link::Live);
    let rate = v.steps_per_s().unwrap_or(0.0);
    if training {
        let mut rate_seg = vec![Span::raw(format!("{} it/s", fmt::rate(rate)))];
        if let Some((_, peak)) = v.rate.starved() {
            rate_seg.push(Span::styled(format!(" starved (was {})", fmt::rate(peak)), t.warn));
        }
        segments.push(rate_seg);
    }
    let elapsed = (v.last_t - v.started_at).max(0.0);
    let arrow = if app.ascii { "->" } else { "→" };
    // To the plan's end where every phase left has a step count; else at most max_steps.
    let eta = match (plan_end(v), training && rate > 0.0) {
        (Some((end, exact)), true) if end > v.step => {
            let left = fmt::duration((end - v.step) as f64 / rate);
            let at_most = if app.ascii { "<= " } else { "≤ " };
            format!(" {arrow} ETA {}{left}", if exact { "" } else { at_most })
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

/// The step the run will end at: `(step, exact)`. Exact where the current phase and every
/// later one end by a step count (or `max_steps` comes first); else `max_steps`, an upper
/// bound (a phase that ends by a rule or by hand may end the plan sooner, or run to it).
pub(crate) fn plan_end(v: &crate::model::state::RunView) -> Option<(u64, bool)> {
    let max = v.max_steps;
    let exact = v.current_phase().and_then(|span| {
        let i = v.plan.iter().position(|p| p.name == span.name)?;
        let mut end = span.start;
        for p in &v.plan[i..] {
            end += p.steps?;
        }
        Some(end)
    });
    match (exact, max) {
        (Some(e), Some(m)) => Some((e.min(m), true)),
        (Some(e), None) => Some((e, true)),
        (None, Some(m)) => Some((m, false)),
        (None, None) => None,
    }
}

fn draw_footer(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    // A replay, and a live run's history, show the scrubber; the live end the keys.
    if let (Some(p), false) = (&app.player, matches!(app.mode, Mode::Command { .. }))
        && !p.at_live_end()
    {
        return draw_replay_footer(f, app, p, area);
    }
    let w = area.width as usize;
    let line = match &app.mode {
        Mode::Command { input, .. } => {
            Line::from(vec![Span::styled(":", t.accent), Span::raw(input.clone()), Span::styled("▏", t.accent)])
        }
        _ => match app.status.get() {
            Some((msg, true)) => Line::from(Span::styled(fmt::fit(msg, w, app.ascii), t.error)),
            Some((msg, false)) => Line::from(Span::raw(fmt::fit(msg, w, app.ascii))),
            None => {
                let mut spans = Vec::new();
                let mut keys = footer_keys(app);
                if app.is_live() && app.live_view().pending_suggestion().is_some() {
                    // What to do with the suggestion comes first, in the warning colour.
                    use crate::keymap::Action as A;
                    let k = |a| app.keymap.first_key(a).to_string();
                    spans.push(Span::styled(format!(" {} accept  {} dismiss ", k(A::Accept), k(A::Dismiss)), t.warn));
                }
                let used: usize = spans.iter().map(|s| s.width()).sum();
                // Help first and quit last are kept at any width: the hints between them
                // give way, the one before quit first.
                let text = |keys: &[String]| format!(" {}", keys.join("  "));
                while keys.len() > 2 && text(&keys).chars().count() > w.saturating_sub(used) {
                    keys.remove(keys.len() - 2);
                }
                spans.push(Span::styled(fmt::fit(&text(&keys), w.saturating_sub(used), app.ascii), t.dim));
                Line::from(spans)
            }
        },
    };
    f.render_widget(Paragraph::new(line), area);
}

/// The footer's key hints: only keys that do something here (a run that is not live
/// has no pause, switch or checkpoint).
fn footer_keys(app: &App) -> Vec<String> {
    use crate::keymap::Action as A;
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
    parts
}

/// The replay footer: the scrubber over half the width, the position, then the status
/// (or the replay keys).
fn draw_replay_footer(f: &mut Frame, app: &App, p: &crate::player::replay::Player, area: Rect) {
    use crate::keymap::Action as A;
    let t = &app.theme;
    let w = area.width as usize;
    // The timeline spans every compared run: a longer second run's tail is reachable.
    let (now, last) = (app.timeline_step(), app.timeline_last());
    let mut spans = scrubber(app, (w / 2).max(10), now, last, &p.mark_steps());
    spans.push(Span::raw(format!(" {}/{} ", fmt::step(now), fmt::step(last))));
    let room = w.saturating_sub(spans.iter().map(|s| s.width()).sum());
    spans.push(match app.status.get() {
        Some((msg, true)) => Span::styled(fmt::fit(msg, room, app.ascii), t.error),
        Some((msg, false)) => Span::raw(fmt::fit(msg, room, app.ascii)),
        None => {
            let k = |a| app.keymap.first_key(a).to_string();
            let live = if p.is_live() { format!("  {} live", k(A::GotoEnd)) } else { String::new() };
            Span::styled(
                format!(
                    " {} {} scrub  {} pacing{live}  {} help  {} command  {} quit",
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

fn draw_panel(f: &mut Frame, app: &App, panel: Panel, area: Rect, focused: bool) {
    match panel {
        Panel::Loss => draw_chart(f, app, area, focused, panel, &[("train", "train_loss"), ("val", "val_loss")]),
        Panel::Accuracy => draw_chart(f, app, area, focused, panel, &[("train", "train_acc"), ("val", "val_acc")]),
        Panel::Lr => draw_chart(f, app, area, focused, panel, &[("lr", "lr")]),
        Panel::Grad => draw_chart(f, app, area, focused, panel, &[("grad", "grad_norm"), ("dist", "dist_init")]),
        Panel::Diversity => {
            let metric = DIVERSITY_METRICS[app.charts.diversity_metric];
            let layers: Vec<&String> = match app.charts.diversity_layer {
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
        Panel::System => crate::render::system::draw(f, app, area, focused),
    }
}
