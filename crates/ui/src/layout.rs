//! Layouts: which panels appear, where, and in what proportions, read from TOML
//! (`layouts/NAME.toml`; the shipped ones are also embedded in the binary).

use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Panel {
    Loss,
    Accuracy,
    Lr,
    Grad,
    Diversity,
    Signals,
    Plan,
    Events,
    System,
}

impl Panel {
    pub fn title(self) -> &'static str {
        match self {
            Panel::Loss => "loss",
            Panel::Accuracy => "accuracy",
            Panel::Lr => "learning rate",
            Panel::Grad => "gradient & weights",
            Panel::Diversity => "feature diversity",
            Panel::Signals => "signals",
            Panel::Plan => "plan",
            Panel::Events => "events",
            Panel::System => "system",
        }
    }

    /// Lists with a row selection (↑/↓ move it, Enter opens the row's full text).
    pub fn is_list(self) -> bool {
        matches!(self, Panel::Signals | Panel::Events)
    }

    pub fn is_chart(self) -> bool {
        matches!(self, Panel::Loss | Panel::Accuracy | Panel::Lr | Panel::Grad | Panel::Diversity)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    pub panel: Panel,
    #[serde(default = "hundred")]
    pub ratio: u16,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    #[serde(default = "hundred")]
    pub ratio: u16,
    /// A fixed height in terminal rows instead of a share (`height = 1`: a plan drawn
    /// as one line, without a border).
    #[serde(default)]
    pub height: Option<u16>,
    pub panels: Vec<Cell>,
}

fn hundred() -> u16 {
    100
}

fn small_below() -> u16 {
    32
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    #[serde(rename = "row")]
    pub rows: Vec<Row>,
    /// The arrangement for terminals shorter than `small_below` rows (`[[small_row]]`),
    /// where every panel of `rows` would get too few rows to read; none: `rows` always.
    #[serde(default, rename = "small_row")]
    pub small_rows: Vec<Row>,
    #[serde(default = "small_below")]
    pub small_below: u16,
    #[serde(skip)]
    pub name: String,
}

pub const SHIPPED: &[(&str, &str)] = &[
    ("default", include_str!("../../../layouts/default.toml")),
    ("compact", include_str!("../../../layouts/compact.toml")),
    ("diversity", include_str!("../../../layouts/diversity.toml")),
];

impl Layout {
    pub fn parse(name: &str, file: &str, src: &str) -> Result<Layout, String> {
        let mut l: Layout = toml::from_str(src).map_err(|e| {
            let (line, col) = e.span().map_or((0, 0), |s| line_col(src, s.start));
            format!("{file}:{line}:{col}: {}", e.message().trim().replace('`', "\""))
        })?;
        if l.rows.is_empty() || l.rows.iter().chain(&l.small_rows).any(|r| r.panels.is_empty()) {
            return Err(format!("{file}: a layout needs at least one row, each with at least one panel"));
        }
        l.name = name.to_string();
        Ok(l)
    }

    /// `layouts/NAME.toml` under `dir` if it exists, else the embedded copy.
    pub fn load(name: &str, dir: &Path) -> Result<Layout, String> {
        let path = Self::path(name, dir);
        if let Ok(src) = std::fs::read_to_string(&path) {
            return Layout::parse(name, &path.display().to_string(), &src);
        }
        match SHIPPED.iter().find(|(n, _)| *n == name) {
            Some((_, src)) => Layout::parse(name, &format!("<embedded {name}.toml>"), src),
            None => {
                let names: Vec<&str> = SHIPPED.iter().map(|s| s.0).collect();
                Err(format!("no layout \"{name}\" (looked for {}; shipped: {})", path.display(), names.join(", ")))
            }
        }
    }

    /// A layout's file: NAME means `DIR/NAME.toml`; a path (with a `/` or ending in
    /// `.toml`, as `:layout layouts/x.toml` or `:layout ~/my.toml` give) is taken as it is.
    pub fn path(name: &str, dir: &Path) -> PathBuf {
        if name.contains('/') || name.ends_with(".toml") {
            return match name.strip_prefix("~/").zip(std::env::var_os("HOME")) {
                Some((rest, home)) => Path::new(&home).join(rest),
                None => PathBuf::from(name),
            };
        }
        dir.join(format!("{name}.toml"))
    }

    pub fn panels(&self) -> Vec<Panel> {
        self.rows.iter().flat_map(|r| r.panels.iter().map(|c| c.panel)).collect()
    }

    /// Whether a terminal `height` rows high gets the small arrangement.
    pub fn is_small(&self, height: u16) -> bool {
        height < self.small_below && !self.small_rows.is_empty()
    }

    /// The rows drawn: the small arrangement or the usual one.
    pub fn rows_for(&self, small: bool) -> &[Row] {
        if small && !self.small_rows.is_empty() { &self.small_rows } else { &self.rows }
    }

    /// The panels drawn, in focus order.
    pub fn panels_for(&self, small: bool) -> Vec<Panel> {
        self.rows_for(small).iter().flat_map(|r| r.panels.iter().map(|c| c.panel)).collect()
    }
}

fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..src.floor_char_boundary(offset.min(src.len()))];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_layouts_parse() {
        for (name, src) in SHIPPED {
            let l = Layout::parse(name, name, src).unwrap();
            assert!(!l.panels().is_empty());
        }
    }

    #[test]
    fn bad_panel_is_located() {
        // A path is a path: not layouts/layouts/x.toml.toml.
        assert_eq!(Layout::path("layouts/x.toml", Path::new("layouts")), PathBuf::from("layouts/x.toml"));
        assert_eq!(Layout::path("mine.toml", Path::new("layouts")), PathBuf::from("mine.toml"));
        assert_eq!(Layout::path("compact", Path::new("layouts")), PathBuf::from("layouts/compact.toml"));
        let e = Layout::parse("x", "x.toml", "[[row]]\npanels = [{ panel = \"lose\" }]\n").unwrap_err();
        assert!(e.starts_with("x.toml:2:21: unknown variant \"lose\""), "{e}");
    }
}
