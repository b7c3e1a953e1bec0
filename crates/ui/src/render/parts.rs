//! What every drawing room of the dashboard shares: the common imports, a panel's
//! block, fitting segments to a width. Depends on nothing else in `render`, so the
//! rooms depend on it and never on each other's parent.

pub(super) use crate::app::{App, DIVERSITY_METRICS, Link, Mode};
pub(super) use crate::event::RunStatus;
pub(super) use crate::fmt;
pub(super) use crate::layout::Panel;
pub(super) use crate::model::replay_index::MarkKind;
pub(super) use crate::model::state::{Mark, RunView};
pub(super) use crate::player::compare;
pub(super) use ratatui::Frame;
pub(super) use ratatui::layout::{Constraint, Layout, Rect};
pub(super) use ratatui::style::{Modifier, Style};
pub(super) use ratatui::symbols;
pub(super) use ratatui::text::{Line, Span};
pub(super) use ratatui::widgets::{
    Axis, Block, BorderType, Borders, Chart, Clear, Dataset, GraphType, Paragraph, Wrap,
};

pub(crate) fn phase_index(v: &RunView, name: &str) -> usize {
    v.plan.iter().position(|p| p.name == name).unwrap_or(0)
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

pub(crate) fn panel_block<'a>(app: &App, title: Line<'a>, focused: bool) -> Block<'a> {
    let b = Block::default().borders(Borders::ALL).title(title);
    let b = if app.ascii { b.border_set(ASCII_BORDER) } else { b.border_type(BorderType::Rounded) };
    b.border_style(if focused { app.theme.focus_border } else { app.theme.border })
}

/// Spans that fit `width` cells: segments are dropped whole, least important first
/// (each segment is (priority, spans); a higher priority is kept longer), and the kept
/// ones stay in their order.
pub(crate) fn fit_segments<'a>(mut segs: Vec<(u8, Vec<Span<'a>>)>, width: usize) -> Vec<Span<'a>> {
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

/// A list panel's name; comparing, with the run whose rows it shows (`r` cycles).
pub(crate) fn rows_title(app: &App, name: &str) -> String {
    match app.rows_run_name() {
        Some(run) => format!("{name} · {run}"),
        None => name.to_string(),
    }
}
