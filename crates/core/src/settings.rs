//! The settings an operator may change on a live run (`ctl set`, the dashboard's `:set`):
//! their names, and the overrides a run carries until its phase changes. The trainer
//! applies them; checkpoints record them; the command grammar completes them.

/// Settings changed by hand (`set KEY=VALUE`) for the current phase; cleared when the
/// phase changes, because a new phase brings its own settings.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Overrides {
    pub lr: Option<f64>,
    pub weight_decay: Option<f64>,
    pub momentum: Option<f64>,
    pub batch_size: Option<usize>,
    pub label_noise: Option<f64>,
}

/// Keys accepted by the trainer's `set`.
pub const SETTABLE_KEYS: &[&str] = &["lr", "weight_decay", "momentum", "batch_size", "label_noise"];
