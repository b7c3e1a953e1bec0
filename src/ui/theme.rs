//! Colours. The default palette is Okabe–Ito (distinguishable with the common forms of
//! colour blindness); `ansi16` uses only the 16 terminal colours; `mono` uses none and
//! is chosen automatically when NO_COLOR is set. Meaning is never carried by colour
//! alone: phases have labels, markers have glyphs, series have legend names.

use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThemeKind {
    Default,
    Ansi16,
    Mono,
}

impl ThemeKind {
    pub fn parse(s: &str) -> Option<ThemeKind> {
        match s {
            "default" => Some(ThemeKind::Default),
            "ansi16" | "16" => Some(ThemeKind::Ansi16),
            "mono" | "none" => Some(ThemeKind::Mono),
            _ => None,
        }
    }

    /// `requested` unless NO_COLOR is set (https://no-color.org).
    pub fn resolve(requested: Option<ThemeKind>) -> ThemeKind {
        if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            return ThemeKind::Mono;
        }
        requested.unwrap_or(ThemeKind::Default)
    }
}

#[derive(Debug, Clone)]
pub struct Theme {
    pub kind: ThemeKind,
    series: Vec<Color>,
    phases: Vec<Color>,
    pub accent: Style,
    pub dim: Style,
    pub warn: Style,
    pub error: Style,
    pub ok: Style,
    pub focus_border: Style,
    pub border: Style,
    pub highlight: Style,
}

impl Theme {
    pub fn new(kind: ThemeKind) -> Theme {
        let rgb = |r, g, b| Color::Rgb(r, g, b);
        let (series, phases) = match kind {
            ThemeKind::Default => (
                // Okabe–Ito: blue, orange, bluish green, vermillion, sky blue, reddish purple, yellow.
                vec![
                    rgb(0, 114, 178),
                    rgb(230, 159, 0),
                    rgb(0, 158, 115),
                    rgb(213, 94, 0),
                    rgb(86, 180, 233),
                    rgb(204, 121, 167),
                    rgb(240, 228, 66),
                ],
                vec![
                    rgb(86, 180, 233),
                    rgb(230, 159, 0),
                    rgb(0, 158, 115),
                    rgb(204, 121, 167),
                    rgb(240, 228, 66),
                    rgb(213, 94, 0),
                ],
            ),
            ThemeKind::Ansi16 => (
                vec![Color::LightBlue, Color::Yellow, Color::LightGreen, Color::LightRed, Color::Cyan, Color::Magenta],
                vec![Color::Cyan, Color::Yellow, Color::Green, Color::Magenta, Color::Blue, Color::Red],
            ),
            ThemeKind::Mono => (vec![Color::Reset], vec![Color::Reset]),
        };
        let mono = kind == ThemeKind::Mono;
        let c = |color: Color| if mono { Style::default() } else { Style::default().fg(color) };
        Theme {
            kind,
            series,
            phases,
            accent: c(Color::Cyan).add_modifier(Modifier::BOLD),
            dim: if mono { Style::default() } else { Style::default().fg(Color::DarkGray) },
            warn: c(Color::Yellow).add_modifier(Modifier::BOLD),
            error: c(Color::Red).add_modifier(Modifier::BOLD),
            ok: c(Color::Green),
            focus_border: c(Color::Cyan).add_modifier(Modifier::BOLD),
            border: if mono { Style::default() } else { Style::default().fg(Color::Gray) },
            highlight: Style::default().add_modifier(Modifier::REVERSED),
        }
    }

    pub fn series(&self, i: usize) -> Style {
        if self.kind == ThemeKind::Mono {
            return Style::default();
        }
        Style::default().fg(self.series[i % self.series.len()])
    }

    pub fn phase(&self, i: usize) -> Style {
        if self.kind == ThemeKind::Mono {
            return Style::default().add_modifier(if i % 2 == 0 { Modifier::REVERSED } else { Modifier::UNDERLINED });
        }
        Style::default().bg(self.phases[i % self.phases.len()]).fg(Color::Black)
    }

    pub fn phase_fg(&self, i: usize) -> Style {
        if self.kind == ThemeKind::Mono {
            return Style::default().add_modifier(Modifier::BOLD);
        }
        Style::default().fg(self.phases[i % self.phases.len()]).add_modifier(Modifier::BOLD)
    }
}
