//! "Starved": the trainer runs far below its own recent rate (another process took its
//! cores, libtorch's threads wait on each other, the machine swaps). Folded from the
//! `steps_per_s` the host records with every step (a rate over windows of ~0.5 s), so a
//! replay shows it where it happened.

/// Below this share of the recent peak rate, for [`WINDOWS`] rate windows in a row.
pub const SHARE: f64 = 1.0 / 3.0;
/// Consecutive slow windows before saying so (one slow window: an evaluation, a checkpoint).
pub const WINDOWS: u32 = 3;
/// The peak decays by this factor a window (half-life ~35 windows, ~17 s), so a run
/// that settles at a new, slower rate (a larger batch) stops being called starved.
const DECAY: f64 = 0.98;

// Serialised with the rest of `RunView` in the replay index file (`events.idx`).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RateWatch {
    peak: f64,
    last: f64,
    slow: u32,
}

impl RateWatch {
    /// One step's recorded rate; a new window is a value different from the last.
    pub fn push(&mut self, rate: f64) {
        if !rate.is_finite() || rate <= 0.0 || rate == self.last {
            return;
        }
        self.last = rate;
        self.peak = (self.peak * DECAY).max(rate);
        if rate < self.peak * SHARE { self.slow += 1 } else { self.slow = 0 }
    }

    /// A pause or a resume: the rate before it says nothing about the rate after.
    pub fn reset(&mut self) {
        *self = RateWatch::default();
    }

    /// `(now, recent peak)` while starved.
    pub fn starved(&self) -> Option<(f64, f64)> {
        (self.slow >= WINDOWS).then_some((self.last, self.peak))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lasting_drop_is_starved_a_blip_is_not_and_a_new_level_is_accepted() {
        let mut w = RateWatch::default();
        for i in 0..20 {
            w.push(400.0 + i as f64);
        }
        assert_eq!(w.starved(), None);
        w.push(60.0); // one slow window: an evaluation
        w.push(405.0);
        assert_eq!(w.starved(), None);
        for r in [8.0, 9.0, 7.0] {
            w.push(r);
        }
        let (now, peak) = w.starved().expect("starved");
        assert_eq!(now, 7.0);
        assert!(peak > 350.0, "{peak}");
        w.push(390.0);
        assert_eq!(w.starved(), None);
        // A slower but steady rate stops being "starved" once the peak has decayed.
        for i in 0..200 {
            w.push(100.0 + (i % 2) as f64);
        }
        assert_eq!(w.starved(), None);
    }
}
