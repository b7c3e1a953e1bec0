//! What a checkpoint directory holds, read without libtorch: each checkpoint is
//! `step-<step>.safetensors` (tensors, written by the trainer) plus `step-<step>.json`
//! ([`CheckpointMeta`], written last, so its presence marks a complete checkpoint).
//! `branch` plans from these and the trainer saves and restores through them.

use crate::settings::Overrides;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointMeta {
    pub step: u64,
    pub phase: String,
    pub phase_index: usize,
    pub phase_start: u64,
    pub optimizer: String,
    pub overrides: Overrides,
    /// Whether the phase change that made this checkpoint keeps it from pruning.
    #[serde(default)]
    pub pinned: bool,
}

pub fn tensors_path(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("step-{step:09}.safetensors"))
}

pub fn meta_path(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("step-{step:09}.json"))
}

/// Complete checkpoints in `dir`, oldest first.
pub fn list(dir: &Path) -> Vec<CheckpointMeta> {
    let mut out: Vec<CheckpointMeta> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| serde_json::from_slice::<CheckpointMeta>(&std::fs::read(e.path()).ok()?).ok())
        .filter(|m| tensors_path(dir, m.step).exists())
        .collect();
    out.sort_by_key(|m| m.step);
    out
}

/// The latest of `list` (oldest first, as [`list`] gives it) at or before step `at`: what
/// `branch --at` starts from, and with `u64::MAX` what `--resume` and a rollback restore.
pub fn at_or_before(list: &[CheckpointMeta], at: u64) -> Option<&CheckpointMeta> {
    list.iter().rev().find(|c| c.step <= at)
}

/// The latest complete checkpoint in `dir`.
pub fn latest(dir: &Path) -> Option<CheckpointMeta> {
    at_or_before(&list(dir), u64::MAX).cloned()
}
