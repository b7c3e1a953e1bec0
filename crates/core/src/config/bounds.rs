//! The one table of numeric bounds: the range a real run can have for every numeric
//! setting. The config validator checks every value in a file against it
//! (file:line:col, exit 2), and the live `set` command (`ctl RUN set KEY=V` and the
//! dashboard's `:set`, both applied by `Trainer::set`) checks its value against the same
//! row, so a value refused in a file is refused live too. Memory is bounded separately,
//! by `trainer::memory` (a config can be within every bound and still too big together).

/// One setting's range.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// The key as written in the config (and, for live settings, in `set KEY=V`).
    pub key: &'static str,
    pub min: f64,
    pub max: f64,
    /// Whether `min` itself is allowed (`lr` must be > 0, not ≥ 0).
    pub min_inclusive: bool,
    /// Whole numbers only.
    pub integer: bool,
}

const fn int(key: &'static str, min: f64, max: f64) -> Bound {
    Bound { key, min, max, min_inclusive: true, integer: true }
}
const fn real(key: &'static str, min: f64, max: f64) -> Bound {
    Bound { key, min, max, min_inclusive: true, integer: false }
}
const fn positive(key: &'static str, max: f64) -> Bound {
    Bound { key, min: 0.0, max, min_inclusive: false, integer: false }
}

/// Every numeric setting's range. Keys are unique across sections (`dim` is shared by
/// the parity and gaussian tasks, with one range).
pub const BOUNDS: &[Bound] = &[
    // [run]
    int("max_steps", 1.0, 1e12),
    int("threads", 0.0, 1024.0),
    positive("rollback_lr_factor", 1.0),
    // [task]
    int("p", 2.0, 65_536.0),
    real("train_fraction", 0.01, 0.99),
    int("dim", 1.0, 1_000_000.0),
    int("k", 1.0, 1_000_000.0),
    int("classes", 2.0, 100_000.0),
    int("clusters_per_class", 1.0, 10_000.0),
    real("spread", 0.0, 1e6),
    int("n_train", 1.0, 1e9),
    int("n_val", 1.0, 1e9),
    real("val_fraction", 0.01, 0.99),
    // [model]
    int("depth", 1.0, 1000.0),
    int("width", 1.0, 65_536.0),
    positive("init_scale", 100.0),
    int("d_model", 1.0, 16_384.0),
    int("heads", 1.0, 1024.0),
    int("layers", 1.0, 1000.0),
    int("d_ff", 1.0, 65_536.0),
    int("channels", 1.0, 4096.0),
    // [probes], [eval], [checkpoint]
    int("probe_batch", 2.0, 65_536.0),
    int("max_samples", 0.0, 1e9),
    int("checkpoint_keep", 0.0, 1e6),
    // [[phase]] (lr, weight_decay, momentum, batch_size, label_noise are also live settings)
    // Far above any useful rate, but below what overflows a float32 update at once
    // (`set lr=1e308`); the divergence tests force a non-finite loss with 10¹².
    positive("lr", 1e12),
    real("weight_decay", 0.0, 100.0),
    real("momentum", 0.0, 0.999_999),
    int("batch_size", 1.0, 1_048_576.0),
    real("label_noise", 0.0, 1.0),
    real("input_noise", 0.0, 1e6),
    real("min_lr", 0.0, 1e12),
    real("loss_weight", 0.0, 1e6),
];

/// The bound for `key`; every key the validator or `set` checks has one.
pub fn bound(key: &str) -> &'static Bound {
    BOUNDS.iter().find(|b| b.key == key).unwrap_or_else(|| panic!("no bound for \"{key}\""))
}

fn show(x: f64) -> String {
    if x.abs() >= 1e7 && x.fract() == 0.0 { format!("{x:e}") } else { format!("{x}") }
}

impl Bound {
    /// `Ok` when `value` is in range; else the message, e.g. `batch_size must be a whole
    /// number in [1, 1048576], got 1000000000000`.
    pub fn check(&self, value: f64) -> Result<(), String> {
        let low_ok = if self.min_inclusive { value >= self.min } else { value > self.min };
        let ok = value.is_finite() && low_ok && value <= self.max && (!self.integer || value.fract() == 0.0);
        if ok {
            return Ok(());
        }
        let open = if self.min_inclusive { "[" } else { "(" };
        let kind = if self.integer { "a whole number" } else { "a number" };
        Err(format!(
            "{} must be {kind} in {open}{}, {}], got {}",
            self.key,
            show(self.min),
            show(self.max),
            show(value)
        ))
    }

    /// As [`Bound::check`] for an integer setting (exact, whatever its size).
    pub fn check_int(&self, value: i128) -> Result<(), String> {
        if (value as f64) >= self.min && (value as f64) <= self.max {
            return Ok(());
        }
        Err(format!("{} must be a whole number in [{}, {}], got {value}", self.key, show(self.min), show(self.max)))
    }
}

/// Checks a live setting (`set KEY=V`) against its bound.
pub fn check(key: &str, value: f64) -> Result<(), String> {
    bound(key).check(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_ranges_ordered() {
        for (i, b) in BOUNDS.iter().enumerate() {
            assert!(b.min < b.max, "{}", b.key);
            assert!(BOUNDS[i + 1..].iter().all(|o| o.key != b.key), "{} twice", b.key);
        }
    }

    #[test]
    fn resource_bombs_are_refused() {
        assert!(check("batch_size", 1e12).unwrap_err().contains("batch_size must be a whole number"));
        assert!(check("lr", 1e308).is_err());
        assert!(check("lr", 0.0).is_err());
        assert!(check("lr", f64::NAN).is_err());
        assert!(check("batch_size", 2.5).is_err());
        assert!(bound("width").check_int(1_000_000_000).is_err());
        assert!(bound("width").check_int(i64::MAX as i128).is_err());
        assert!(bound("threads").check_int(1 << 31).is_err());
        assert!(check("lr", 0.001).is_ok());
        assert!(check("batch_size", 128.0).is_ok());
    }
}
