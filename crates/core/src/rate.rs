//! The steps-per-second figure a host records with every step (`steps_per_s`, what the
//! dashboard's header and its `starved` warning read): one place for both hosts, the
//! built-in trainer's and the external runs'.

use std::time::Instant;

/// The metric name of the rate in `step` events.
pub const STEPS_PER_S: &str = "steps_per_s";

/// Steps per second over windows of about half a second, excluding paused time.
pub struct StepRate {
    window_start: Instant,
    window_step: u64,
    value: f64,
    /// The window's start by the job's own clock ([`StepRate::tick_at`]).
    window_t: Option<f64>,
}

impl StepRate {
    pub fn new(step: u64) -> StepRate {
        StepRate { window_start: Instant::now(), window_step: step, value: 0.0, window_t: None }
    }

    /// The rate as of `step`, which the job reached at `t` by its own clock (seconds): an
    /// external job's rate is its script's, not the rate its frames arrive at (a buffered
    /// batch of a thousand steps arrives at once).
    pub fn tick_at(&mut self, step: u64, t: f64) -> f64 {
        let Some(start) = self.window_t else {
            (self.window_t, self.window_step) = (Some(t), step);
            return self.value;
        };
        let dt = t - start;
        if dt >= 0.5 || self.value == 0.0 && step > self.window_step && dt > 0.0 {
            self.value = step.saturating_sub(self.window_step) as f64 / dt;
            if dt >= 0.5 {
                (self.window_t, self.window_step) = (Some(t), step);
            }
        }
        self.value
    }

    /// The rate as of `step`, reached now. Before the first half second it is the rate
    /// since the start, so a run shows one at once.
    pub fn tick(&mut self, step: u64) -> f64 {
        let dt = self.window_start.elapsed().as_secs_f64();
        if dt >= 0.5 || self.value == 0.0 && step > self.window_step && dt > 0.0 {
            self.value = step.saturating_sub(self.window_step) as f64 / dt;
            if dt >= 0.5 {
                self.window_start = Instant::now();
                self.window_step = step;
            }
        }
        self.value
    }

    /// The last rate given by [`StepRate::tick`].
    pub fn value(&self) -> f64 {
        self.value
    }

    /// The run paused: time from now on until the next window does not count.
    pub fn pause(&mut self) {
        self.window_start = Instant::now();
        self.window_t = None;
        self.value = 0.0;
    }

    /// Paused time is not steps' time: the next window starts at `step`, now.
    pub fn resume(&mut self, step: u64) {
        self.window_start = Instant::now();
        self.window_step = step;
        self.window_t = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_steps_over_wall_time() {
        // Bounded on both sides by clocks read around the rate's own: a busy machine may
        // oversleep by any amount.
        let t0 = std::time::Instant::now();
        let mut r = StepRate::new(0);
        std::thread::sleep(std::time::Duration::from_millis(100));
        let first = r.tick(10);
        let most = t0.elapsed().as_secs_f64();
        assert!(first >= 10.0 / most - 1e-9 && first <= 100.0, "10 steps in ≥ 0.1 s (≤ {most} s): {first}");
        std::thread::sleep(std::time::Duration::from_millis(500));
        let v = r.tick(60);
        let most = t0.elapsed().as_secs_f64();
        // 60 steps over the whole time, or (had the first sleep run past the half-second
        // window) the last 50 over part of it.
        assert!(v >= 50.0 / most - 1e-9 && v <= 100.0, "60 steps in ≥ 0.6 s (≤ {most} s): {v}");
        r.pause();
        assert_eq!(r.value, 0.0);
    }

    /// By the job's clock: 1 000 steps in its 2 s are 500 steps/s, however fast they arrive.
    #[test]
    fn the_jobs_rate_is_by_its_own_clock() {
        let mut r = StepRate::new(0);
        r.tick_at(0, 100.0);
        assert_eq!(r.tick_at(1000, 102.0), 500.0);
        assert_eq!(r.tick_at(1500, 103.0), 500.0);
    }
}
