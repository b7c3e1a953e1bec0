//! Helpers shared by the dashboard tests (`mod common;` in each test crate).

use phasetop::ui::app::{App, CommandSink};
use phasetop::ui::keymap::Keymap;
use phasetop::ui::layout::{Layout, SHIPPED};
use phasetop::ui::model::state::RunView;
use phasetop::ui::render;
use phasetop::ui::theme::{Theme, ThemeKind};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::collections::BTreeMap;

/// A dashboard over `view` with a shipped layout, default keys, and `sink` for commands.
pub fn app(view: RunView, layout: &str, theme: ThemeKind, sink: Box<dyn CommandSink>) -> App {
    let keymap = Keymap::new(&BTreeMap::new()).unwrap();
    let src = SHIPPED.iter().find(|(n, _)| *n == layout).unwrap().1;
    let layout = Layout::parse(layout, layout, src).unwrap();
    App::new(view, keymap, Theme::new(theme), layout, "layouts".into(), sink)
}

/// The whole screen drawn at `w`×`h`, one line per row, trailing spaces trimmed.
pub fn screen(app: &App, w: u16, h: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| render::draw(f, app)).unwrap();
    let buf = term.backend().buffer();
    let mut out = String::new();
    for y in 0..h {
        let line: String = (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
