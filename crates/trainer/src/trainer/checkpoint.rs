//! Checkpoints: one safetensors file with the model (`model.<name>`), the initial
//! weights (`init.<name>`, for distance-from-init) and the optimizer's state
//! (`opt.{m,v,t}.<name>`), the model's buffers (`buffer.<name>`: batch norm's running
//! statistics, a TorchScript module's buffers), plus a JSON file with the position in the plan. The JSON is
//! written last, after the tensors are on disk, so its presence marks a complete
//! checkpoint; both are written to a temporary name and renamed.

use super::Trainer;
use anyhow::{Context, Result, bail};
pub use phasetop_core::checkpoints::{CheckpointMeta, at_or_before, latest, list, meta_path, tensors_path};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Writes a checkpoint of the trainer's current state into `dir`.
pub fn save(t: &Trainer, dir: &Path, pinned: bool) -> Result<PathBuf> {
    let run = dir.parent().unwrap_or(Path::new("."));
    phasetop_core::modes::create_dir(dir, phasetop_core::modes::dir_mode_in(run))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let step = t.step();
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for ((name, p), p0) in t.named_params().iter().zip(t.init_params()) {
        tensors.push((format!("model.{name}"), p.detach()));
        tensors.push((format!("init.{name}"), p0.shallow_clone()));
    }
    for (name, b) in t.buffers() {
        tensors.push((format!("buffer.{name}"), b.detach()));
    }
    tensors.extend(t.optimizer().state());
    let final_path = tensors_path(dir, step);
    let tmp = final_path.with_extension("safetensors.tmp");
    // A failed write (a full disk) names the file and leaves no temporary file behind.
    let written = Tensor::write_safetensors(&tensors, &tmp)
        .map_err(anyhow::Error::from)
        // libtorch's writer leaves the mode to the umask: set the run's.
        .and_then(|()| set_mode(&tmp))
        .and_then(|()| sync_file(&tmp))
        .and_then(|()| std::fs::rename(&tmp, &final_path).map_err(anyhow::Error::from));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!("cannot write checkpoint {}", final_path.display())));
    }
    let meta = CheckpointMeta {
        step,
        phase: t.phase().name().to_string(),
        phase_index: t.phase_index(),
        phase_start: t.phase_start(),
        optimizer: t.optimizer().kind().to_string(),
        overrides: t.overrides().clone(),
        pinned,
    };
    // The JSON last: its presence marks the checkpoint complete (`write_atomic`: temporary
    // name, fsync, rename, fsync of the directory).
    crate::rundir::write_atomic(&meta_path(dir, step), &serde_json::to_vec_pretty(&meta)?)?;
    Ok(final_path)
}

fn set_mode(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = phasetop_core::modes::file_mode_for(p);
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn sync_file(p: &Path) -> Result<()> {
    std::fs::File::open(p)?.sync_all()?;
    Ok(())
}

/// Restores the newest checkpoint in `dir` that is good: readable, and with parameters
/// and optimizer state that are all finite (a step that blew up can be checkpointed
/// after its update and before the next loss shows it). What a rollback goes back to.
/// Returns that checkpoint with its restore warnings, and a line for each newer one it
/// passed over; `None` when no checkpoint is good (the trainer is then as it was, unless
/// a checkpoint failed part-way through its restore).
pub fn restore_last_good(t: &mut Trainer, dir: &Path) -> (Option<(CheckpointMeta, Vec<String>)>, Vec<String>) {
    let mut passed_over = Vec::new();
    for meta in list(dir).into_iter().rev() {
        match holds_only_finite_values(dir, &meta) {
            Ok(true) => match restore(t, dir, &meta) {
                Ok(warnings) => return (Some((meta, warnings)), passed_over),
                Err(e) => passed_over.push(format!("checkpoint at step {}: {e:#}", meta.step)),
            },
            Ok(false) => passed_over.push(format!("checkpoint at step {} holds non-finite values", meta.step)),
            Err(e) => passed_over.push(format!("checkpoint at step {}: {e:#}", meta.step)),
        }
    }
    (None, passed_over)
}

/// Whether every floating-point tensor of a checkpoint is finite.
fn holds_only_finite_values(dir: &Path, meta: &CheckpointMeta) -> Result<bool> {
    let path = tensors_path(dir, meta.step);
    let tensors = Tensor::read_safetensors(&path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(tensors.iter().all(|(_, t)| !t.is_floating_point() || t.isfinite().all().int64_value(&[]) != 0))
}

/// Keeps the newest `keep` unpinned checkpoints and every pinned one.
/// Deletes the oldest unpinned checkpoints beyond `keep`; the steps deleted (the host
/// records each, so no reader offers a checkpoint that is gone).
pub fn prune(dir: &Path, keep: usize) -> Vec<u64> {
    let unpinned: Vec<CheckpointMeta> = list(dir).into_iter().filter(|m| !m.pinned).collect();
    if unpinned.len() <= keep {
        return Vec::new();
    }
    let mut gone = Vec::new();
    for m in &unpinned[..unpinned.len() - keep] {
        let _ = std::fs::remove_file(meta_path(dir, m.step));
        let _ = std::fs::remove_file(tensors_path(dir, m.step));
        gone.push(m.step);
    }
    gone
}

/// Restores a checkpoint into a trainer built from the same config. Returns warnings
/// about anything that could not be restored (the caller logs them).
pub fn restore(t: &mut Trainer, dir: &Path, meta: &CheckpointMeta) -> Result<Vec<String>> {
    let path = tensors_path(dir, meta.step);
    let loaded: HashMap<String, Tensor> = Tensor::read_safetensors(&path)
        .with_context(|| format!("cannot read checkpoint {}", path.display()))?
        .into_iter()
        .collect();
    if meta.phase_index >= t.config().phases.len() || t.config().phases[meta.phase_index].name() != meta.phase {
        bail!("checkpoint phase \"{}\" (#{}) is not in this config's plan", meta.phase, meta.phase_index);
    }
    let mut warnings = Vec::new();
    tch::no_grad(|| -> Result<()> {
        for (name, p) in t.named_params() {
            let saved =
                loaded.get(&format!("model.{name}")).with_context(|| format!("checkpoint lacks model.{name}"))?;
            if saved.size() != p.size() {
                bail!("checkpoint model.{name} has shape {:?}, the model {:?}", saved.size(), p.size());
            }
            p.shallow_clone().copy_(saved);
        }
        for (name, b) in t.buffers() {
            let saved =
                loaded.get(&format!("buffer.{name}")).with_context(|| format!("checkpoint lacks buffer.{name}"))?;
            if saved.size() != b.size() {
                bail!("checkpoint buffer.{name} has shape {:?}, the model {:?}", saved.size(), b.size());
            }
            b.shallow_clone().copy_(saved);
        }
        for ((name, _), p0) in t.named_params().iter().zip(t.init_params()) {
            match loaded.get(&format!("init.{name}")) {
                Some(saved) => p0.shallow_clone().copy_(saved),
                None => warnings.push(format!("initial weights of {name} not in checkpoint: dist_init restarts")),
            }
        }
        Ok(())
    })?;
    t.set_position(meta.step, meta.phase_index, meta.phase_start, meta.overrides.clone());
    let missing = t.optimizer_mut().load_state(&loaded);
    if !missing.is_empty() {
        warnings.push(format!(
            "optimizer state not restored for {} parameter(s) ({}): they start cold",
            missing.len(),
            missing.join(", ")
        ));
    }
    Ok(warnings)
}
