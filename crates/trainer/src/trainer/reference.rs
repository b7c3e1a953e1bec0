//! What a plain PyTorch re-implementation needs to retrace a run step for step
//! (`scripts/reference/`, `tests/reference.rs`): the initial weights and the training
//! batches, as safetensors files.
//!
//! - `init.safetensors`: `init.<name>` for every parameter, the same keys a checkpoint
//!   (`runs/<id>/checkpoints/step-*.safetensors`) holds, so the reference reads either.
//! - `batches.safetensors`: `x` (`[steps, batch, …]`, f32 features or i64 token ids,
//!   input noise added) and `y` (`[steps, batch]` i64 labels, label noise applied): the
//!   batches of steps 1..=steps under the trainer's current phase and overrides, which
//!   is what `train_step` draws (batches are a function of seed and step).
//! - `heldout.safetensors`: `x`, `y`, the held-out split `evaluate` scores (capped by
//!   `eval.max_samples`), for a reference that records the same evals.

use super::Trainer;
use anyhow::{Context, Result, bail};
use std::path::Path;
use tch::Tensor;

/// Writes the trainer's initial weights (`init.<name>`) to `path`.
pub fn write_init(t: &Trainer, path: &Path) -> Result<()> {
    let tensors: Vec<(String, Tensor)> =
        t.named_params().iter().zip(t.init_params()).map(|((n, _), p0)| (format!("init.{n}"), p0.copy())).collect();
    Tensor::write_safetensors(&tensors, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes the batches of the next `steps` steps (from the trainer's current step on) to
/// `path`. Every batch must have the same size (one phase, no `batch_size` override
/// in between), as a reference run of one phase has.
pub fn write_batches(t: &Trainer, path: &Path, steps: u64) -> Result<()> {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for s in t.step() + 1..=t.step() + steps {
        let (x, y) = t.training_batch(s);
        if let Some(first) = xs.first()
            && Tensor::size(first) != x.size()
        {
            bail!("step {s}: batch shape {:?} differs from the first batch's {:?}", x.size(), Tensor::size(first));
        }
        xs.push(x.to_device(tch::Device::Cpu));
        ys.push(Tensor::from_slice(&y));
    }
    if xs.is_empty() {
        bail!("no steps to write");
    }
    let tensors = [("x", Tensor::stack(&xs, 0)), ("y", Tensor::stack(&ys, 0))];
    Tensor::write_safetensors(&tensors, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes the held-out split the trainer evaluates on (`x`, `y`: the rows `evaluate`
/// scores, capped by `eval.max_samples`) to `path`.
pub fn write_heldout(t: &Trainer, path: &Path) -> Result<()> {
    let n_all = t.data.val_y.size()[0];
    let n = match t.cfg.eval.max_samples {
        0 => n_all,
        cap => n_all.min(cap as i64),
    };
    let cpu = tch::Device::Cpu;
    let tensors =
        [("x", t.data.val_x.narrow(0, 0, n).to_device(cpu)), ("y", t.data.val_y.narrow(0, 0, n).to_device(cpu))];
    Tensor::write_safetensors(&tensors, path).with_context(|| format!("cannot write {}", path.display()))
}
