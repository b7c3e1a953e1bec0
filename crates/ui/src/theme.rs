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

    /// `requested` unless NO_COLOR is set (https://no-color.org); without a request,
    /// what the terminal can show (see [`ThemeKind::for_terminal`]).
    pub fn resolve(requested: Option<ThemeKind>) -> ThemeKind {
        let var = |k| std::env::var(k).ok();
        ThemeKind::for_terminal(
            requested,
            var("NO_COLOR").as_deref(),
            var("TERM").as_deref(),
            var("COLORTERM").as_deref(),
        )
    }

    /// The default palette is 24-bit colour, which a terminal says it shows through
    /// `COLORTERM=truecolor|24bit` (or a `*-direct` TERM); any other terminal (`linux`,
    /// `xterm`, `screen-256color` without it) gets the 16-colour theme, `TERM=dumb` none.
    pub fn for_terminal(
        requested: Option<ThemeKind>,
        no_color: Option<&str>,
        term: Option<&str>,
        colorterm: Option<&str>,
    ) -> ThemeKind {
        if no_color.is_some_and(|v| !v.is_empty()) {
            return ThemeKind::Mono;
        }
        if let Some(k) = requested {
            return k;
        }
        let truecolor = matches!(colorterm.map(str::to_ascii_lowercase).as_deref(), Some("truecolor" | "24bit"));
        match term.unwrap_or("") {
            _ if truecolor => ThemeKind::Default,
            t if t.ends_with("-direct") => ThemeKind::Default,
            "dumb" => ThemeKind::Mono,
            _ => ThemeKind::Ansi16,
        }
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
            return Style::default().add_modifier(if i.is_multiple_of(2) {
                Modifier::REVERSED
            } else {
                Modifier::UNDERLINED
            });
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

#[cfg(test)]
mod tests {
    use super::ThemeKind::{self, *};

    #[test]
    fn the_theme_follows_what_the_terminal_says_it_can_show() {
        let k = |req, nc, term, ct| ThemeKind::for_terminal(req, nc, term, ct);
        assert_eq!(k(None, None, Some("linux"), None), Ansi16);
        assert_eq!(k(None, None, Some("xterm"), None), Ansi16);
        assert_eq!(k(None, None, Some("xterm-256color"), None), Ansi16);
        assert_eq!(k(None, None, Some("xterm"), Some("truecolor")), Default);
        assert_eq!(k(None, None, Some("tmux-256color"), Some("24bit")), Default);
        assert_eq!(k(None, None, Some("xterm-direct"), None), Default);
        assert_eq!(k(None, None, Some("dumb"), None), Mono);
        assert_eq!(k(Some(Default), None, Some("linux"), None), Default, "asked for");
        assert_eq!(k(Some(Default), Some("1"), Some("xterm"), Some("truecolor")), Mono, "NO_COLOR wins");
    }
}
