//! The footer's status message: what the last key or command did, gone after a while.

use std::time::{Duration, Instant};

/// How long a status message stays in the footer.
pub const STATUS_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct StatusLine {
    /// The message and whether it is an error.
    message: Option<(String, bool)>,
    /// When the message goes (see [`StatusLine::expire`]); `None`: it stays.
    until: Option<Instant>,
}

impl StatusLine {
    /// The message shown, and whether it is an error.
    pub fn get(&self) -> Option<&(String, bool)> {
        self.message.as_ref()
    }

    pub fn set_for(&mut self, msg: impl Into<String>, error: bool, ttl: Duration) {
        self.message = Some((msg.into(), error));
        self.until = Some(Instant::now() + ttl);
    }

    pub fn clear(&mut self) {
        *self = StatusLine::default();
    }

    /// Drops a message whose time is up; true when one went (redraw).
    pub fn expire(&mut self, now: Instant) -> bool {
        if self.message.is_some() && self.until.is_some_and(|t| now >= t) {
            self.clear();
            return true;
        }
        false
    }
}
