//! Notifications: a signal, a suggestion or the end of a live run rings the terminal
//! bell and, with `osc`, sends a desktop notification by OSC 9 (iTerm2, WezTerm, kitty,
//! Windows Terminal) and OSC 777 (`notify;TITLE;BODY`: VTE terminals, WezTerm, kitty),
//! which travel through SSH like any output. Inside tmux each sequence is wrapped in
//! tmux's passthrough (`ESC P tmux; … ESC \`, tmux ≥ 3.3 with `allow-passthrough on`).
//!
//! `--notify off|bell|osc` on the dashboard commands, else `[dashboard] notify` in the
//! run's config, else `osc`. Only what happens while the dashboard watches a live run
//! notifies: not the history it reads on attach, not a replay.

use crate::config::NotifyMode;
use crate::event::Event;
use std::time::{Duration, Instant};

/// Signals notify at most this often (a burst of spikes is one notification); a
/// suggestion and the run's end always do.
const SIGNAL_GAP: Duration = Duration::from_secs(10);

pub struct Notifier {
    /// `--notify`, which wins over the run config's key.
    pub flag: Option<NotifyMode>,
    /// Wrap sequences for tmux's passthrough (`$TMUX` is set).
    pub tmux: bool,
    last_signal: Option<Instant>,
}

impl Notifier {
    pub fn new(flag: Option<NotifyMode>, tmux: bool) -> Notifier {
        Notifier { flag, tmux, last_signal: None }
    }

    /// The mode in force: the flag, else `[dashboard] notify` of the run's config (read
    /// each time: a dashboard may start before the run's first record), else `osc`.
    pub fn mode(&self, config: &serde_json::Value) -> NotifyMode {
        let key = config.pointer("/dashboard/notify").and_then(|v| v.as_str()).and_then(NotifyMode::parse);
        self.flag.or(key).unwrap_or(NotifyMode::Osc)
    }

    /// The bytes to write for a batch of newly arrived events (empty: nothing to say):
    /// one notification for the batch, about its most important event.
    pub fn on_events<'a>(
        &mut self,
        config: &serde_json::Value,
        run: &str,
        events: impl IntoIterator<Item = &'a Event>,
        now: Instant,
    ) -> Vec<u8> {
        let mode = self.mode(config);
        if mode == NotifyMode::Off {
            return Vec::new();
        }
        let mut best: Option<(u8, String)> = None;
        let mut more = 0;
        for ev in events {
            if let Some((rank, text)) = message(ev) {
                if best.as_ref().is_some_and(|b| b.0 >= rank) {
                    more += 1;
                    continue;
                }
                if best.is_some() {
                    more += 1;
                }
                best = Some((rank, text));
            }
        }
        let Some((rank, mut body)) = best else { return Vec::new() };
        if rank == 1 {
            if self.last_signal.is_some_and(|t| now.duration_since(t) < SIGNAL_GAP) {
                return Vec::new();
            }
            self.last_signal = Some(now);
        }
        if more > 0 {
            body.push_str(&format!(" (+{more} more)"));
        }
        sequence(mode, &format!("phasetop: {run}"), &body, self.tmux)
    }
}

/// What an event says in a notification, ranked: 3 the run's end, 2 a suggestion, 1 a
/// signal; other events say nothing.
pub fn message(ev: &Event) -> Option<(u8, String)> {
    match ev {
        Event::RunEnded { step, status, message } => {
            Some((3, format!("run {} at step {}: {message}", status.as_str(), super::fmt::step(*step))))
        }
        Event::Suggestion { step, to_phase, because, .. } => Some((
            2,
            format!("suggests switching to {to_phase} at step {} ({because}): a accepts", super::fmt::step(*step)),
        )),
        Event::Signal { step, detector, metric, .. } => {
            Some((1, format!("{detector} on {metric} at step {}", super::fmt::step(*step))))
        }
        _ => None,
    }
}

/// The bell, then (osc) OSC 9 and OSC 777, each wrapped for tmux when asked.
pub fn sequence(mode: NotifyMode, title: &str, body: &str, tmux: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if mode == NotifyMode::Off {
        return out;
    }
    out.push(0x07);
    if mode == NotifyMode::Osc {
        // OSC 777 separates its fields by ';': a title keeps none.
        let (title, body) = (clean(title).replace(';', ","), clean(body));
        for osc in [format!("\x1b]9;{title}: {body}\x07"), format!("\x1b]777;notify;{title};{body}\x07")] {
            if tmux {
                out.extend_from_slice(b"\x1bPtmux;");
                out.extend_from_slice(osc.replace('\x1b', "\x1b\x1b").as_bytes());
                out.extend_from_slice(b"\x1b\\");
            } else {
                out.extend_from_slice(osc.as_bytes());
            }
        }
    }
    out
}

/// Text safe inside an OSC string: no control characters (a BEL or ESC would end it
/// early), at most 200 characters.
fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::RunStatus;

    fn signal(step: u64) -> Event {
        Event::Signal {
            step,
            detector: "plateau".into(),
            metric: "train_loss".into(),
            score: 1.0,
            message: "m".into(),
            figures: Default::default(),
        }
    }

    #[test]
    fn bell_osc_and_tmux_passthrough() {
        assert!(sequence(NotifyMode::Off, "t", "b", false).is_empty());
        assert_eq!(sequence(NotifyMode::Bell, "t", "b", false), b"\x07");
        let osc = String::from_utf8(sequence(NotifyMode::Osc, "phasetop: a;b", "done\x1b[2J\x07", false)).unwrap();
        assert_eq!(osc, "\x07\x1b]9;phasetop: a,b: done[2J\x07\x1b]777;notify;phasetop: a,b;done[2J\x07");
        let tmux = String::from_utf8(sequence(NotifyMode::Osc, "t", "b", true)).unwrap();
        assert_eq!(tmux, "\x07\x1bPtmux;\x1b\x1b]9;t: b\x07\x1b\\\x1bPtmux;\x1b\x1b]777;notify;t;b\x07\x1b\\");
    }

    #[test]
    fn one_notification_a_batch_and_signals_spaced() {
        let t0 = Instant::now();
        let mut n = Notifier::new(None, false);
        let cfg = serde_json::Value::Null;
        let end = Event::RunEnded { step: 3000, status: RunStatus::Completed, message: "reached max_steps".into() };
        let sugg = Event::Suggestion { step: 5, id: 1, to_phase: "main".into(), because: "plateau".into() };
        let out = String::from_utf8(n.on_events(&cfg, "r", [&signal(1), &sugg, &end], t0)).unwrap();
        assert!(out.contains("run completed at step 3 000: reached max_steps (+2 more)"), "{out:?}");
        assert_eq!(out.matches("\x1b]9;").count(), 1);
        assert!(!n.on_events(&cfg, "r", [&signal(2)], t0).is_empty());
        assert!(n.on_events(&cfg, "r", [&signal(3)], t0 + Duration::from_secs(1)).is_empty(), "signals spaced");
        assert!(!n.on_events(&cfg, "r", [&sugg], t0 + Duration::from_secs(1)).is_empty(), "a suggestion always");
        assert!(!n.on_events(&cfg, "r", [&signal(4)], t0 + Duration::from_secs(11)).is_empty());
        let log = Event::Checkpoint { step: 1, path: "c".into() };
        assert!(n.on_events(&cfg, "r", [&log], t0 + Duration::from_secs(60)).is_empty());
        assert!(Notifier::new(Some(NotifyMode::Off), false).on_events(&cfg, "r", [&end], t0).is_empty());
        // The run config's key, unless the flag says otherwise.
        let quiet = serde_json::json!({ "dashboard": { "notify": "off" } });
        assert!(Notifier::new(None, false).on_events(&quiet, "r", [&end], t0).is_empty());
        assert_eq!(Notifier::new(Some(NotifyMode::Bell), false).on_events(&quiet, "r", [&end], t0), b"\x07");
    }
}
