//! Run configuration: TOML parsed with serde, then validated. Every error carries the
//! file, line and column of the offending value (see [`ConfigError`]).
//!
//! Enumerated settings (optimizer, schedule, activation, …) have hand-written
//! `Deserialize` impls so that their messages read `unknown optimizer "adamm", expected
//! one of sgd, adam, adamw` rather than serde's generic wording; the toml crate attaches
//! the value's span to them. Cross-field rules (a cosine schedule needs a step count, a
//! frozen layer must exist) are checked afterwards against `Spanned` fields.

pub mod bounds;
mod defaults;
pub mod external;
mod names;
mod validate;

pub use names::*;
pub use validate::check_module_layers;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A config error located in its source file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn at(file: &str, src: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, col) = line_col(src, offset);
        ConfigError { file: file.to_string(), line, col, message: message.into() }
    }
}

/// An error located at the value of `key = …` (the first such line after `[section]`
/// when given; the file's start when absent), for settings read without a span.
pub fn error_at_key(
    file: &str,
    src: &str,
    section: Option<&str>,
    key: &str,
    message: impl Into<String>,
) -> ConfigError {
    let at = validate::find_key(src, section, key).unwrap_or(0);
    ConfigError::at(file, src, at, message)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..src.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub run: RunSection,
    pub task: TaskSection,
    pub model: ModelSection,
    #[serde(default)]
    pub probes: ProbeSection,
    #[serde(default)]
    pub eval: EvalSection,
    #[serde(default)]
    pub checkpoint: CheckpointSection,
    /// How the dashboard watching this run behaves; the host ignores it.
    #[serde(default, skip_serializing_if = "DashboardSection::is_default")]
    pub dashboard: DashboardSection,
    #[serde(rename = "phase")]
    pub phases: Vec<Phase>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    pub name: String,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub device: DeviceChoice,
    /// Total steps over all phases; the run completes when it is reached.
    pub max_steps: Spanned<u64>,
    /// libtorch intra-op threads; 0 picks them from the model's size (`trainer::threads`).
    #[serde(default)]
    pub threads: usize,
    /// What a non-finite loss does: end the run as diverged, or roll back to the latest
    /// checkpoint with the learning rate scaled by `rollback_lr_factor` (at most 3 times).
    #[serde(default)]
    pub on_divergence: OnDivergence,
    #[serde(default = "half")]
    pub rollback_lr_factor: f64,
    /// The run directory is 0700 (only its owner reads the log, config and
    /// checkpoints); `true` makes it 0750, for a group that shares runs.
    #[serde(default, skip_serializing_if = "is_false")]
    pub group_readable: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn half() -> f64 {
    0.5
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSection {
    pub kind: Spanned<TaskKind>,
    // modular
    #[serde(default)]
    pub p: Option<Spanned<i64>>,
    #[serde(default)]
    pub op: Option<ModOp>,
    #[serde(default)]
    pub train_fraction: Option<Spanned<f64>>,
    // parity
    #[serde(default)]
    pub dim: Option<Spanned<i64>>,
    #[serde(default)]
    pub k: Option<Spanned<i64>>,
    // gaussian
    #[serde(default)]
    pub classes: Option<Spanned<i64>>,
    #[serde(default)]
    pub clusters_per_class: Option<Spanned<i64>>,
    #[serde(default)]
    pub spread: Option<f64>,
    // parity / gaussian sample counts
    #[serde(default)]
    pub n_train: Option<Spanned<i64>>,
    #[serde(default)]
    pub n_val: Option<Spanned<i64>>,
    // csv
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    #[serde(default)]
    pub features: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub label: Option<Spanned<String>>,
    #[serde(default)]
    pub val_fraction: Option<Spanned<f64>>,
    /// Fresh samples for every training batch instead of a fixed training set (tasks
    /// that generate their data: parity, gaussian).
    #[serde(default)]
    pub online: Option<Spanned<bool>>,
    /// gaussian: the standard deviation of the cluster centres' coordinates (2.0).
    #[serde(default)]
    pub centre_scale: Option<Spanned<f64>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub kind: Spanned<ModelKind>,
    // mlp
    #[serde(default)]
    pub depth: Option<Spanned<i64>>,
    #[serde(default)]
    pub width: Option<Spanned<i64>>,
    #[serde(default)]
    pub activation: Option<Activation>,
    #[serde(default)]
    pub init_scale: Option<Spanned<f64>>,
    /// Initialisation scheme (`torch` when absent); see [`InitKind`].
    #[serde(default)]
    pub init: Option<Spanned<InitKind>>,
    /// mlp on a token task: a learned embedding of this width per token instead of
    /// one-hot inputs.
    #[serde(default)]
    pub embed: Option<Spanned<i64>>,
    /// With `embed`: one table for every position (true, the default) or one per position.
    #[serde(default)]
    pub embed_shared: Option<Spanned<bool>>,
    // transformer
    #[serde(default)]
    pub d_model: Option<Spanned<i64>>,
    #[serde(default)]
    pub heads: Option<Spanned<i64>>,
    #[serde(default)]
    pub layers: Option<Spanned<i64>>,
    #[serde(default)]
    pub d_ff: Option<Spanned<i64>>,
    #[serde(default)]
    pub positional: Option<bool>,
    // cnn
    /// Output channels of each conv block (3×3, padding 1).
    #[serde(default)]
    pub channels: Option<Spanned<Vec<i64>>>,
    /// Batch norm after each convolution.
    #[serde(default)]
    pub batch_norm: Option<Spanned<bool>>,
    /// Pooling after each block (2×2, stride 2) while the image is at least 2 wide.
    #[serde(default)]
    pub pool: Option<Spanned<PoolKind>>,
    // torchscript
    /// The saved TorchScript module (relative to the config file).
    #[serde(default)]
    pub path: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSection {
    /// Probe every N steps; 0 turns probes off.
    #[serde(default)]
    pub every: u64,
    #[serde(default)]
    pub layers: Vec<Spanned<String>>,
    /// Samples in the fixed probe batch.
    #[serde(default = "default_probe_batch")]
    pub batch: Spanned<i64>,
    /// Which split the probe batch is drawn from (`val` when absent).
    #[serde(default)]
    pub split: Option<ProbeSplit>,
}

fn default_probe_batch() -> Spanned<i64> {
    Spanned::new(0..0, 256)
}

impl Default for ProbeSection {
    fn default() -> Self {
        ProbeSection { every: 0, layers: Vec::new(), batch: default_probe_batch(), split: None }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSection {
    /// Evaluate on the held-out split every N steps (0 turns evaluation off), or
    /// `"auto"` (the default): as often as keeps evaluation near 1 % of the training
    /// compute, see [`EvalEvery::resolve`].
    #[serde(default)]
    pub every: EvalEvery,
    /// Cap on held-out samples per evaluation (0 = all).
    #[serde(default)]
    pub max_samples: usize,
}

/// `eval.every`: a step count, or `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvalEvery {
    #[default]
    Auto,
    Steps(u64),
}

/// Share of the training compute the `"auto"` evaluation schedule spends.
pub const AUTO_EVAL_BUDGET: f64 = 0.01;

impl EvalEvery {
    /// The step interval. `"auto"`: an evaluation's forward pass over `eval_samples`
    /// costs at most about half a training step (forward + backward) per `batch`
    /// samples (a third in FLOPs; large evaluation batches use caches less well: half
    /// is what the bench transformer measures), so evaluating every
    /// `eval_samples / (2 · batch · budget)` steps spends at most about `budget` of it; rounded down to 1, 2 or 5 × 10ᵏ so the steps read well,
    /// and at most `max_steps / 50` (at least 10) so a short run still gets a curve.
    pub fn resolve(self, eval_samples: usize, batch: usize, max_steps: u64) -> u64 {
        match self {
            EvalEvery::Steps(n) => n,
            EvalEvery::Auto => {
                let raw = eval_samples as f64 / (2.0 * batch.max(1) as f64 * AUTO_EVAL_BUDGET);
                let cap = (max_steps / 50).max(10);
                round_down_to_1_2_5(raw.max(1.0) as u64).clamp(10, cap)
            }
        }
    }
}

fn round_down_to_1_2_5(n: u64) -> u64 {
    let mut decade = 1;
    while decade * 10 <= n {
        decade *= 10;
    }
    [5, 2, 1].into_iter().map(|f| f * decade).find(|&v| v <= n).unwrap_or(1)
}

impl Serialize for EvalEvery {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            EvalEvery::Auto => s.serialize_str("auto"),
            EvalEvery::Steps(n) => s.serialize_u64(*n),
        }
    }
}

impl<'de> Deserialize<'de> for EvalEvery {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = EvalEvery;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a step count (0 = off) or \"auto\"")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> std::result::Result<EvalEvery, E> {
                Ok(EvalEvery::Steps(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> std::result::Result<EvalEvery, E> {
                u64::try_from(n)
                    .map(EvalEvery::Steps)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(n), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<EvalEvery, E> {
                match v {
                    "auto" => Ok(EvalEvery::Auto),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl Default for EvalSection {
    fn default() -> Self {
        EvalSection { every: EvalEvery::Auto, max_samples: 0 }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardSection {
    /// Notifications (`--notify` overrides it); absent: `osc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifyMode>,
}

impl DashboardSection {
    fn is_default(&self) -> bool {
        *self == DashboardSection::default()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSection {
    /// Checkpoint every N steps; 0 = only at phase changes and on stop.
    #[serde(default = "default_ckpt_every")]
    pub every: u64,
    /// How many periodic checkpoints to keep (phase-change ones are always kept).
    #[serde(default = "default_ckpt_keep")]
    pub keep: usize,
}

fn default_ckpt_every() -> u64 {
    1000
}
fn default_ckpt_keep() -> usize {
    3
}

impl Default for CheckpointSection {
    fn default() -> Self {
        CheckpointSection { every: default_ckpt_every(), keep: default_ckpt_keep() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub name: Spanned<String>,
    /// The phase ends after this many steps; absent = only by hand (or a rule).
    #[serde(default)]
    pub steps: Option<Spanned<u64>>,
    pub optimizer: Spanned<OptimizerKind>,
    pub lr: Spanned<f64>,
    #[serde(default)]
    pub weight_decay: Option<Spanned<f64>>,
    #[serde(default)]
    pub momentum: Option<Spanned<f64>>,
    #[serde(default)]
    pub betas: Option<Spanned<(f64, f64)>>,
    #[serde(default)]
    pub schedule: Option<Spanned<ScheduleKind>>,
    #[serde(default)]
    pub warmup_steps: Option<Spanned<u64>>,
    #[serde(default)]
    pub min_lr: Option<Spanned<f64>>,
    #[serde(default)]
    pub cycle_steps: Option<Spanned<u64>>,
    pub batch_size: Spanned<i64>,
    /// Loss terms; defaults to one cross-entropy term of weight 1.
    #[serde(default)]
    pub loss: Vec<LossTerm>,
    /// Named layers whose parameters do not train in this phase.
    #[serde(default)]
    pub freeze: Vec<Spanned<String>>,
    #[serde(default)]
    pub reset_optimizer: bool,
    /// Fraction of training labels replaced by random ones (classification tasks).
    #[serde(default)]
    pub label_noise: Option<Spanned<f64>>,
    /// Standard deviation of Gaussian noise added to real-valued inputs.
    #[serde(default)]
    pub input_noise: Option<Spanned<f64>>,
    /// Data mixture: the relative weight of each class in training batches (one per
    /// class, ≥ 0); absent = the split's own class frequencies.
    #[serde(default)]
    pub class_weights: Option<Spanned<Vec<f64>>>,
    /// Signal rule that ends the phase (evaluated by the signals layer).
    #[serde(default)]
    pub until: Option<Spanned<UntilRule>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossTerm {
    pub kind: Spanned<LossKind>,
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

/// A phase ending driven by a detector firing on a metric.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UntilRule {
    pub detector: Spanned<String>,
    pub metric: Spanned<String>,
    #[serde(default)]
    pub mode: RuleMode,
    /// The rule is ignored before the phase has run this many steps.
    #[serde(default)]
    pub min_steps: u64,
    /// The rule acts only if the detector's condition still holds this many steps after
    /// it fired (a transient false alarm is dropped with a log line). Default: for `auto`
    /// (a false switch changes the run) [`AUTO_CONFIRM_FRACTION`] of the phase's steps so
    /// far at the firing, between [`AUTO_CONFIRM_MIN_STEPS`] and [`AUTO_CONFIRM_STEPS`],
    /// so the wait scales with the run and delays the switch by at most that fraction;
    /// 0 for `suggest` (the operator decides). An explicit value always wins.
    pub confirm_steps: Option<u64>,
    /// Detector parameters, passed through to the detector.
    #[serde(default)]
    pub params: toml::Table,
    /// A `suggest` rule pauses the run when it suggests, until the suggestion is answered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hold: bool,
    /// A suggestion stays open at least this many seconds of wall time, whatever the step
    /// rate: where the plan would end the phase or the run by itself meanwhile, the run
    /// waits for the answer until then. Default [`SUGGESTION_OPEN_S`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_s: Option<Spanned<f64>>,
}

/// How long a suggestion stays open by default (seconds): time for a person to read and act.
pub const SUGGESTION_OPEN_S: f64 = 30.0;

/// Most `confirm_steps` of an `auto` rule that does not set it.
pub const AUTO_CONFIRM_STEPS: u64 = 100;
/// Fewest `confirm_steps` of an `auto` rule that does not set it.
pub const AUTO_CONFIRM_MIN_STEPS: u64 = 10;
/// `confirm_steps` of an `auto` rule that does not set it, as a fraction of the phase's
/// steps at the firing (then clamped to `AUTO_CONFIRM_MIN_STEPS..=AUTO_CONFIRM_STEPS`).
pub const AUTO_CONFIRM_FRACTION: f64 = 0.05;

impl UntilRule {
    /// How long its suggestions stay open.
    pub fn open(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.open_s.as_ref().map_or(SUGGESTION_OPEN_S, |s| *s.get_ref()))
    }

    /// The rule's `confirm_steps` for a firing `steps_in_phase` steps into the phase,
    /// defaults applied (see the field `confirm_steps`).
    pub fn confirm_steps_at(&self, steps_in_phase: u64) -> u64 {
        self.confirm_steps.unwrap_or(match self.mode {
            RuleMode::Auto => default_auto_confirm(steps_in_phase),
            RuleMode::Suggest => 0,
        })
    }
}

/// The default `confirm_steps` of an `auto` rule whose detector fired `steps_in_phase`
/// steps into its phase.
pub fn default_auto_confirm(steps_in_phase: u64) -> u64 {
    ((AUTO_CONFIRM_FRACTION * steps_in_phase as f64).round() as u64).clamp(AUTO_CONFIRM_MIN_STEPS, AUTO_CONFIRM_STEPS)
}

/// A loaded, validated config with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    pub path: PathBuf,
    pub source: String,
}

impl LoadedConfig {
    /// The config's short name: its file stem.
    pub fn name(&self) -> String {
        self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// A config is a page of TOML; a bigger file is not one (and `/dev/zero` is not either).
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let display = path.display().to_string();
    let bytes = crate::files::read_regular(path, "the config", MAX_CONFIG_BYTES).map_err(|message| ConfigError {
        file: display.clone(),
        line: 1,
        col: 1,
        message,
    })?;
    let source = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            // Located at the first byte that is not UTF-8, counted in the valid text before it.
            let at = e.utf8_error().valid_up_to();
            let valid = String::from_utf8_lossy(&e.as_bytes()[..at]).into_owned();
            return Err(ConfigError::at(
                &display,
                &valid,
                at,
                format!("the config is not UTF-8 text (byte 0x{:02x} at offset {at})", e.as_bytes()[at]),
            ));
        }
    };
    let config = parse(&display, &source).map_err(|mut e| {
        // `train` given an external run's plan: say what it is for.
        if external::is_external(&source) {
            e.message += " (the file has no [task] or [model] table: if it is an external run's plan, \
                          run it with `phasetop run CONFIG -- CMD`)";
        }
        e
    })?;
    let (config, source) = resolve_paths(path, &display, config, source)?;
    Ok(LoadedConfig { config, path: path.to_path_buf(), source })
}

/// The files a `tensors` task and a `torchscript` model name are relative to the config
/// file. They are made absolute here, in the text too (the value's span replaced by the
/// absolute path, then parsed again), so that the copy a run keeps as
/// `runs/<id>/config.toml` (what `--resume`, `branch` and plan edits read) names the
/// same files wherever it is read from. (A `csv` task's path stays relative to the
/// working directory, as it always was.)
fn resolve_paths(path: &Path, display: &str, config: Config, source: String) -> Result<(Config, String), ConfigError> {
    let base = path.parent().unwrap_or(Path::new(""));
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    let mut consider = |value: &Option<Spanned<String>>| {
        if let Some(v) = value {
            let p = Path::new(v.get_ref());
            if p.is_relative() && !v.get_ref().is_empty() {
                let abs = std::path::absolute(base.join(p)).unwrap_or_else(|_| base.join(p));
                let text = normalise(&abs).display().to_string();
                edits.push((v.span(), toml::Value::String(text).to_string()));
            }
        }
    };
    if *config.task.kind.get_ref() == TaskKind::Tensors {
        consider(&config.task.path);
    }
    if *config.model.kind.get_ref() == ModelKind::TorchScript {
        consider(&config.model.path);
    }
    if edits.is_empty() {
        return Ok((config, source));
    }
    edits.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
    let mut text = source;
    for (span, with) in edits {
        text.replace_range(span, &with);
    }
    let config = parse(display, &text)?;
    Ok((config, text))
}

/// `a/b/../c` → `a/c`, without touching the file system (the file may not exist yet:
/// `check` says so with the config's location).
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A config part in its serialised form, to compare parts (a live plan edit, a branch's
/// `--config`) without their spans.
pub fn as_json<T: serde::Serialize>(part: &T) -> serde_json::Value {
    serde_json::to_value(part).unwrap_or_default()
}

/// Parses and validates config text; `file` is used in error locations.
pub fn parse(file: &str, source: &str) -> Result<Config, ConfigError> {
    let config: Config = toml::from_str(source).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let mut message = tidy_serde_message(e.message());
        // `[phase]` where `[[phase]]` was meant: toml's own words ("duplicate key", "invalid
        // type: map, expected a sequence") do not say what to write instead.
        let line = source[source.floor_char_boundary(offset.min(source.len()))..].lines().next().unwrap_or("");
        let line_start =
            source[..source.floor_char_boundary(offset.min(source.len()))].rfind('\n').map_or(0, |i| i + 1);
        let this_line = source[line_start..].lines().next().unwrap_or(line).trim();
        if this_line == "[phase]"
            || (message.contains("expected a sequence") && source.lines().any(|l| l.trim() == "[phase]"))
        {
            message =
                "phases are an array of tables: write [[phase]] (double brackets) for each phase, not [phase]".into();
        }
        ConfigError::at(file, source, offset, message)
    })?;
    validate::validate(&config, file, source)?;
    Ok(config)
}

/// serde's wording with backticks → the quoting used in our own messages.
fn tidy_serde_message(msg: &str) -> String {
    msg.trim().replace('`', "\"")
}

/// The embedded default config, so the demo runs from a bare binary.
pub const DEMO_CONFIG: &str = include_str!("../../../../configs/demo.toml");
/// The name the embedded demo goes by (its run's `config.toml` source, messages).
pub const DEMO_NAME: &str = "demo.toml";

/// `check` over `paths`: each loaded by the rules of its kind ([`external::is_external`]:
/// a built-in run's config, or an external run's, `phasetop run CONFIG -- CMD`), then for
/// a built-in one `more` (the trainer's preflight, or nothing) gives what to add to its ok
/// line. Which rules applied, and why, is said on the ok line and in an external config's
/// errors. Each error is printed once, on stderr as it comes, starting with its
/// `file:line:col` (so it is returned as an exit code, not an error for the caller to
/// print again); several paths end with a count. Exit code 2 when any failed.
pub fn check_each(
    paths: &[std::path::PathBuf],
    mut more: impl FnMut(&LoadedConfig) -> Result<String, ConfigError>,
) -> std::process::ExitCode {
    let mut failed = 0;
    for p in paths {
        // `load` reports what this cannot read (a FIFO, a device, a missing file).
        let source = crate::files::read_regular(p, "the config", MAX_CONFIG_BYTES).map(String::from_utf8);
        let checked = match source {
            Ok(Ok(source)) if external::is_external(&source) => {
                external::load(p).map(|c| external::check_line(p, &c.config)).map_err(|mut e| {
                    e.message += &format!(" ({})", external::RULES_APPLIED);
                    e
                })
            }
            _ => load(p).and_then(|c| more(&c).map(|extra| format!("{}{extra}", check_line(p, &c.config)))),
        };
        match checked {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
            }
        }
    }
    if failed > 0 && paths.len() > 1 {
        eprintln!("phasetop: {failed} of {} configs failed", paths.len());
    }
    std::process::ExitCode::from(if failed > 0 { 2 } else { 0 })
}

/// `check`'s line for a valid config: `path: ok (2 phases: warmup → main)`.
pub fn check_line(path: &Path, config: &Config) -> String {
    format!("{}: ok ({})", path.display(), phases_line(&config.phase_names()))
}

/// `2 phases: warmup → main`.
fn phases_line(names: &[String]) -> String {
    let n = names.len();
    format!("{n} phase{}: {}", if n == 1 { "" } else { "s" }, names.join(" → "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashboard_notify_is_read_and_a_bad_one_located() {
        let base = "[run]\nname='t'\nmax_steps=10\n[task]\nkind='parity'\n[model]\nkind='mlp'\n\
                    [[phase]]\nname='p'\noptimizer='sgd'\nlr=1.0\nbatch_size=4\n";
        assert_eq!(parse("t.toml", base).unwrap().dashboard.notify, None);
        let c = parse("t.toml", &format!("[dashboard]\nnotify = 'bell'\n{base}")).unwrap();
        assert_eq!(c.dashboard.notify, Some(NotifyMode::Bell));
        let e = parse("t.toml", &format!("[dashboard]\nnotify = 'loud'\n{base}")).unwrap_err();
        assert_eq!(e.to_string(), "t.toml:2:10: unknown notify mode \"loud\", expected one of off, bell, osc");
    }

    #[test]
    fn line_col_counts_from_one() {
        let src = "a = 1\nbb = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 11), (2, 6));
    }

    #[test]
    fn auto_eval_interval_spends_about_one_percent() {
        // 1024 held-out samples at batch 128: 1024 / (2 · 128 · 0.01) = 400 → 200.
        assert_eq!(EvalEvery::Auto.resolve(1024, 128, 1_000_000), 200);
        // 2089 at batch 512 ≈ 204 → 200; 4096 at 64 = 3200 → 2000; tiny held-out sets
        // still wait 10 steps.
        assert_eq!(EvalEvery::Auto.resolve(2089, 512, 1_000_000), 200);
        assert_eq!(EvalEvery::Auto.resolve(4096, 64, 1_000_000), 2000);
        assert_eq!(EvalEvery::Auto.resolve(16, 512, 1_000_000), 10);
        // A short run gets ≥ 50 evaluations (but never more often than every 10 steps).
        assert_eq!(EvalEvery::Auto.resolve(1024, 128, 2000), 40);
        assert_eq!(EvalEvery::Auto.resolve(1024, 128, 100), 10);
        assert_eq!(EvalEvery::Steps(7).resolve(1024, 128, 100), 7);
        assert_eq!(EvalEvery::Steps(0).resolve(1024, 128, 100), 0);
        assert_eq!(
            [1, 9, 10, 19, 20, 49, 50, 99, 5000, 7999].map(round_down_to_1_2_5),
            [1, 5, 10, 10, 20, 20, 50, 50, 5000, 5000]
        );
    }

    #[test]
    fn eval_every_reads_integers_and_auto_and_writes_them_back() {
        let auto: EvalSection = toml::from_str("").unwrap();
        assert_eq!(auto.every, EvalEvery::Auto);
        let explicit: EvalSection = toml::from_str("every = \"auto\"").unwrap();
        assert_eq!(explicit.every, EvalEvery::Auto);
        let n: EvalSection = toml::from_str("every = 25").unwrap();
        assert_eq!(n.every, EvalEvery::Steps(25));
        assert_eq!(serde_json::to_value(&n).unwrap()["every"], 25);
        assert_eq!(serde_json::to_value(&auto).unwrap()["every"], "auto");
        let back: EvalSection = serde_json::from_value(serde_json::to_value(&auto).unwrap()).unwrap();
        assert_eq!(back.every, EvalEvery::Auto);
    }
}
