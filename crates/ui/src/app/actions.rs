//! The dashboard's keys in normal mode: the run's controls, the charts' view (zoom,
//! pan, cursor, smoothing), focus, and compare's per-run choices.

use super::{App, Exit, Mode};
use crate::event::Command;
use crate::keymap::Action;
use crate::layout::Panel;

impl App {
    pub(super) fn on_action(&mut self, a: Action) {
        match a {
            // Nothing to detach from or stop: quit at once.
            Action::Quit if !self.is_live() => self.exit = Some(Exit::Detach),
            Action::Quit => self.mode = Mode::Quit { selected: 0 },
            // Back to the workspace's list: a live run is detached from, never stopped.
            Action::Back if self.back_to_list => self.exit = Some(Exit::Detach),
            Action::Pause | Action::SwitchPhase | Action::Checkpoint | Action::Accept | Action::Dismiss
                if !self.is_live() =>
            {
                let k = self.keymap.first_key(a).to_string();
                let what = match a {
                    Action::Pause => "pause",
                    Action::SwitchPhase => "switch",
                    Action::Checkpoint => "checkpoint",
                    Action::Accept => "accept",
                    _ => "dismiss",
                };
                let msg = self.not_live(&format!("{k} ({what})"));
                self.set_status(msg, true);
            }
            Action::Help => self.mode = Mode::Help,
            Action::Console => self.open_console(),
            Action::Overview => self.open_overview(),
            Action::CommandLine => self.mode = Mode::Command { input: String::new(), history_pos: None },
            Action::Pause => self.send(if self.live_view().paused { Command::Resume } else { Command::Pause }),
            Action::SwitchPhase => {
                let v = self.live_view();
                let current = v.current_phase().map(|p| p.name.clone());
                let selected = v.plan.iter().position(|p| Some(&p.name) != current.as_ref()).unwrap_or(0);
                self.mode = Mode::PhasePicker { selected };
            }
            Action::Accept | Action::Dismiss => match self.live_view().pending_suggestion().map(|s| s.id) {
                Some(id) => self.send(if a == Action::Accept {
                    Command::Accept { id: Some(id) }
                } else {
                    Command::Dismiss { id: Some(id) }
                }),
                None => self.set_status("no pending suggestion", true),
            },
            Action::Checkpoint => self.send(Command::Checkpoint),
            Action::LogScale | Action::IgnoreOutliers | Action::SmoothMore | Action::SmoothLess => {
                let Some(panel) = self.focused_panel().filter(|p| p.is_chart()) else {
                    let k = self.keymap.first_key(a).to_string();
                    return self.set_status(format!("{k} changes the focused chart: focus one with Tab"), true);
                };
                if panel == Panel::Lr && matches!(a, Action::SmoothMore | Action::SmoothLess) {
                    return self.set_status("the learning-rate chart is never smoothed", true);
                }
                let o = self.charts.opts_mut(panel);
                match a {
                    Action::LogScale => o.log_y = !o.log_y,
                    Action::IgnoreOutliers => o.clip = !o.clip,
                    Action::SmoothMore => o.smoothing = ((o.smoothing + 0.1).min(0.99) * 100.0).round() / 100.0,
                    _ => o.smoothing = ((o.smoothing - 0.1).max(0.0) * 100.0).round() / 100.0,
                }
            }
            Action::ZoomIn => self.charts.zoom = (self.charts.zoom + 1).min(30),
            Action::ZoomOut => self.charts.zoom = self.charts.zoom.saturating_sub(1),
            Action::ResetView => self.charts.reset(),
            Action::FullHistory => self.charts.full_history = !self.charts.full_history,
            Action::ToggleBands => match self.compare.as_mut() {
                Some(c) => {
                    let msg = c.cycle_bands();
                    self.set_status(msg, false);
                }
                None => self.set_status("phase bands per run: only when comparing runs (replay RUN_A RUN_B)", true),
            },
            Action::CycleRun => match self.compare.as_ref() {
                Some(c) => {
                    let run = self.rows.next_run(c.names.len());
                    let msg = format!("signals, events and plan: {}", c.names[run]);
                    self.set_status(msg, false);
                }
                None => self.set_status("whose rows: only when comparing runs (replay RUN_A RUN_B)", true),
            },
            Action::ScrubBack | Action::ScrubForward | Action::ToggleUniform => {
                let Some(p) = self.player.as_mut() else {
                    return self.set_status("scrubbing and pacing: only in replay (phasetop replay RUN)", true);
                };
                if a == Action::ToggleUniform {
                    p.set_uniform(!p.uniform);
                    let msg = if p.uniform { "uniform pacing: speed × 10 steps/s" } else { "recorded pacing" };
                    self.set_status(msg, false);
                } else if self.compare.is_some() {
                    // Over the whole timeline, every compared run's steps.
                    let (now, last) = (self.timeline_step(), self.timeline_last());
                    let delta = (last / crate::player::replay::SCRUB_FRACTION).max(1);
                    let to = if a == Action::ScrubForward {
                        now.saturating_add(delta).min(last)
                    } else {
                        now.saturating_sub(delta)
                    };
                    self.seek_timeline(to);
                } else {
                    p.scrub(&mut self.view, a == Action::ScrubForward);
                    self.sync_compare();
                }
            }
            Action::PanLeft | Action::PanRight => {
                let range = self.x_range();
                self.charts.pan(range, a == Action::PanRight, self.view.step);
            }
            Action::CursorLeft | Action::CursorRight => {
                let range = self.x_range();
                self.charts.move_cursor(range, a == Action::CursorLeft);
            }
            Action::NextPanel => self.focus = (self.focus + 1) % self.panels().len().max(1),
            Action::PrevPanel => {
                let n = self.panels().len().max(1);
                self.focus = (self.focus + n - 1) % n;
            }
            Action::NextLayer => self.charts.next_layer(self.view.probe_layers.len()),
            Action::NextDiversityMetric => self.charts.next_diversity_metric(),
            // The other modes' actions: their handlers read them (`on_transport_key`, …).
            _ => {}
        }
    }
}
