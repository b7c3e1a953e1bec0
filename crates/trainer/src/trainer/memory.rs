//! Before anything is allocated: what a run needs (checked by `check` and `train`, and
//! by `set batch_size` on a live run). Each setting has a range (`config::bounds`), but
//! settings within their ranges can still need more memory together than the machine
//! has; a run that would is refused with the figure instead of aborting mid-allocation.
//! Also checked here: the device exists, and a csv task's file reads as a data set.

use super::data::{self, Inputs};
use crate::config::{Config, ConfigError, LoadedConfig, ModelKind, TaskKind};

/// The shape of a task's data, from the config (or, for csv, the file).
#[derive(Debug, Clone, Copy)]
pub struct DataShape {
    /// Train plus held-out rows.
    pub rows: usize,
    pub inputs: Inputs,
    pub classes: usize,
    /// Bytes per input cell while the data set is built (host copies plus the tensor).
    pub build_bytes_per_cell: f64,
}

impl DataShape {
    /// From the config alone; `None` for csv (see [`csv_shape`]).
    pub fn of(cfg: &Config) -> Option<DataShape> {
        let t = &cfg.task;
        let f = |dim| Inputs::Features { dim };
        Some(match t.kind.get_ref() {
            TaskKind::Modular => {
                let p = t.modulus();
                let inputs = match cfg.model.kind.get_ref() {
                    ModelKind::Transformer => Inputs::Tokens { vocab: p + 1, seq_len: 3 },
                    _ => f(2 * p),
                };
                DataShape { rows: p * p, inputs, classes: p, build_bytes_per_cell: 8.0 + 8.0 }
            }
            TaskKind::Parity => DataShape {
                rows: t.n_train() + t.n_val(),
                inputs: f(t.parity_dim()),
                classes: 2,
                build_bytes_per_cell: 8.0 + 4.0,
            },
            TaskKind::Gaussian => DataShape {
                rows: t.n_train() + t.n_val(),
                inputs: f(t.gaussian_dim()),
                classes: t.classes(),
                build_bytes_per_cell: 8.0 + 4.0,
            },
            TaskKind::Csv | TaskKind::Tensors => return None,
        })
    }

    fn cells_per_row(&self) -> f64 {
        match self.inputs {
            Inputs::Tokens { seq_len, .. } => seq_len as f64,
            Inputs::Features { dim } => dim as f64,
        }
    }
}

/// A csv task's shape, reading the file as training would (every problem it would meet
/// at train time: missing, unreadable, ragged, non-numeric or non-finite cells, too few
/// rows, one class, no such label column).
pub fn csv_shape(cfg: &Config) -> anyhow::Result<DataShape> {
    let (rows, dim, classes) = data::csv_dimensions(&cfg.task)?;
    Ok(DataShape { rows, inputs: Inputs::Features { dim }, classes, build_bytes_per_cell: 8.0 * 3.0 + 4.0 })
}

/// A tensors task's shape, reading its file as training would (`data::read_tensors`;
/// float targets also need a regression plan, `check_regression`).
pub fn tensors_shape(cfg: &Config) -> anyhow::Result<DataShape> {
    let t = data::read_tensors(&cfg.task)?;
    if t.regression {
        super::check_regression(cfg).map_err(anyhow::Error::msg)?;
    }
    let rows = (t.x_train.size()[0] + t.x_val.size()[0]) as usize;
    let dim = t.x_train.size()[1..].iter().product::<i64>() as usize;
    Ok(DataShape { rows, inputs: Inputs::Features { dim }, classes: t.classes, build_bytes_per_cell: 4.0 * 2.0 })
}

/// Bytes a run needs, by part.
#[derive(Debug, Clone, Copy)]
pub struct Estimate {
    pub model: f64,
    pub data: f64,
    pub batch: f64,
}

impl Estimate {
    pub fn total(&self) -> f64 {
        self.model + self.data + self.batch
    }
}

/// Parameters of the model `cfg` describes over `shape`'s data.
pub fn parameters(cfg: &Config, shape: &DataShape) -> f64 {
    let m = &cfg.model;
    let classes = shape.classes as f64;
    match (m.kind.get_ref(), shape.inputs) {
        (ModelKind::Transformer, Inputs::Tokens { vocab, seq_len }) => {
            let (d, ff, l) =
                (m.transformer_d_model() as f64, m.transformer_d_ff() as f64, m.transformer_layers() as f64);
            let block = 4.0 * d + (3.0 * d * d + 3.0 * d) + (d * d + d) + (d * ff + ff) + (ff * d + d);
            (vocab as f64 + seq_len as f64) * d + l * block + 2.0 * d + d * classes + classes
        }
        (ModelKind::Cnn, Inputs::Features { dim }) => {
            // Conv blocks, and the head on the last block's features: at most the input's
            // pixels × its channels (pooling shrinks them).
            let mut c_in = 1.0;
            let mut total = 0.0;
            for &c in &m.cnn_channels() {
                total += 9.0 * c_in * c as f64 + 3.0 * c as f64;
                c_in = c as f64;
            }
            total + dim as f64 * c_in * classes + classes
        }
        // Known once the module is loaded: `preflight` adds it.
        (ModelKind::TorchScript, _) => 0.0,
        (_, inputs) => {
            let input = match inputs {
                Inputs::Features { dim } => dim as f64,
                Inputs::Tokens { vocab, seq_len } => (vocab * seq_len) as f64,
            };
            let (w, depth) = (m.mlp_width() as f64, m.mlp_depth() as f64);
            input * w + w + (depth - 1.0) * (w * w + w) + w * classes + classes
        }
    }
}

/// Floats of activations kept per sample for a forward and backward pass.
fn activations_per_sample(cfg: &Config, shape: &DataShape) -> f64 {
    let m = &cfg.model;
    let classes = shape.classes as f64;
    match (m.kind.get_ref(), shape.inputs) {
        (ModelKind::Transformer, Inputs::Tokens { seq_len, .. }) => {
            let (d, ff, l, h) = (
                m.transformer_d_model() as f64,
                m.transformer_d_ff() as f64,
                m.transformer_layers() as f64,
                m.transformer_heads() as f64,
            );
            let t = seq_len as f64;
            t * d + l * t * (12.0 * d + 2.0 * ff + 2.0 * h * t) + 3.0 * classes
        }
        (ModelKind::Cnn, _) => {
            shape.cells_per_row() * (1.0 + 3.0 * m.cnn_channels().iter().sum::<usize>() as f64) + 3.0 * classes
        }
        // A module's activations are unknown: taken as ten times its input.
        (ModelKind::TorchScript, _) => 10.0 * shape.cells_per_row() + 3.0 * classes,
        _ => shape.cells_per_row() + 2.0 * m.mlp_depth() as f64 * m.mlp_width() as f64 + 3.0 * classes,
    }
}

/// What a run of `cfg` over `shape` needs at a batch size of `batch` (the largest of its
/// phases' when `None`).
pub fn estimate(cfg: &Config, shape: &DataShape, batch: Option<usize>) -> Estimate {
    let batch = batch.unwrap_or_else(|| cfg.phases.iter().map(|p| p.batch_size()).max().unwrap_or(1)) as f64;
    // Parameters, gradients, scratch and initial values (the `[4, n]` store), two
    // optimizer moments, and a checkpoint's copies of them while it is written.
    let model = parameters(cfg, shape) * 4.0 * (4.0 + 2.0 + 3.0);
    let data = shape.rows as f64 * (shape.cells_per_row() * shape.build_bytes_per_cell + 24.0);
    // Forward and backward of a training batch (three copies), an evaluation chunk of
    // 4096 and the probe batch (forward only).
    let probe = *cfg.probes.batch.get_ref() as f64;
    let batch_bytes =
        activations_per_sample(cfg, shape) * 4.0 * (3.0 * batch + 4096.0_f64.min(shape.rows as f64) + probe);
    Estimate { model, data, batch: batch_bytes }
}

/// The machine's memory: `MemTotal` in /proc/meminfo.
pub fn mem_total() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// Bytes as "12.3 GB".
pub fn human(bytes: f64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 { format!("{v:.0} {}", units[i]) } else { format!("{v:.1} {}", units[i]) }
}

/// `Err` with the figures when the estimate exceeds the machine's memory.
pub fn fits(cfg: &Config, shape: &DataShape, batch: Option<usize>) -> Result<(), String> {
    let Some(total) = mem_total() else { return Ok(()) };
    let e = estimate(cfg, shape, batch);
    if e.total() <= total {
        return Ok(());
    }
    Err(format!(
        "this run needs about {} of memory (model and optimizer {}, data {}, batches {}), \
         more than this machine has ({} MemTotal)",
        human(e.total()),
        human(e.model),
        human(e.data),
        human(e.batch),
        human(total)
    ))
}

/// Checks what validation cannot without the machine or the file system: the device
/// exists, a csv task's file reads as a data set, and the run fits in memory. Errors are
/// located in the config like any config error (exit code 2).
pub fn preflight(loaded: &LoadedConfig) -> Result<(), ConfigError> {
    let cfg = &loaded.config;
    let file = loaded.path.display().to_string();
    let src = &loaded.source;
    if let crate::config::DeviceChoice::Cuda(n) = cfg.run.device {
        let count = if tch::Cuda::is_available() { tch::Cuda::device_count().max(0) as usize } else { 0 };
        if n >= count {
            return Err(crate::config::error_at_key(&file, src, Some("run"), "device", super::cuda_missing(n, count)));
        }
    }
    let at_path = |e: anyhow::Error| {
        let at = cfg.task.path.as_ref().map_or(0, |p| p.span().start);
        ConfigError::at(&file, src, at, format!("{e:#}"))
    };
    let shape = match DataShape::of(cfg) {
        Some(s) => s,
        None if *cfg.task.kind.get_ref() == TaskKind::Tensors => tensors_shape(cfg).map_err(at_path)?,
        None => csv_shape(cfg).map_err(at_path)?,
    };
    if *cfg.model.kind.get_ref() == ModelKind::Cnn {
        // The data as the cnn reads it: images.
        data::Dataset::build_for(&cfg.task, &cfg.model, 0, tch::Device::Cpu).map_err(at_path)?;
    }
    if *cfg.model.kind.get_ref() == ModelKind::TorchScript {
        check_module(loaded)?;
    }
    fits(cfg, &shape, None).map_err(|m| ConfigError::at(&file, src, cfg.model.kind.span().start, m))
}

/// A TorchScript model's probe-able layers (None for a built-in model), for `check`'s
/// report once `preflight` has passed.
pub fn module_layers(loaded: &LoadedConfig) -> Option<Vec<String>> {
    (*loaded.config.model.kind.get_ref() == ModelKind::TorchScript).then(|| check_module(loaded).ok()).flatten()
}

/// A TorchScript model's module, loaded and checked against the task's data
/// (`script::ScriptModel::load`, errors at the config's `[model] path`), then what the
/// config names in it (probe layers, `until` metrics, `freeze` prefixes). Returns the
/// probe-able layers.
pub fn check_module(loaded: &LoadedConfig) -> Result<Vec<String>, ConfigError> {
    let cfg = &loaded.config;
    let file = loaded.path.display().to_string();
    let span = cfg.model.path.as_ref().map_or(cfg.model.kind.span(), |p| p.span());
    let err = |m: String| ConfigError::at(&file, &loaded.source, span.start, m);
    let data = data::Dataset::build_for(&cfg.task, &cfg.model, cfg.run.seed, tch::Device::Cpu).map_err(|e| {
        let at = cfg.task.path.as_ref().map_or(cfg.task.kind.span(), |p| p.span());
        ConfigError::at(&file, &loaded.source, at.start, format!("{e:#}"))
    })?;
    let rows = data.train_x.size()[0].min(2);
    let path = cfg.model.path.as_ref().expect("validated").get_ref();
    let m = super::script::ScriptModel::load(path, tch::Device::Cpu, &data.train_x.narrow(0, 0, rows), data.classes)
        .map_err(err)?;
    let layers = m.model.layers().to_vec();
    let params: Vec<String> = m.params.iter().map(|(n, _)| n.clone()).collect();
    crate::config::check_module_layers(loaded, &layers, &params)?;
    Ok(layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(task: &str, model: &str, batch: u64) -> Config {
        let text = format!(
            "[run]\nname='m'\nmax_steps=10\n[task]\n{task}\n[model]\n{model}\n\
             [[phase]]\nname='a'\noptimizer='sgd'\nlr=0.1\nbatch_size={batch}\n"
        );
        crate::config::parse("t.toml", &text).unwrap()
    }

    #[test]
    fn small_runs_fit_and_bombs_do_not() {
        let small = cfg("kind='gaussian'\ndim=8", "kind='mlp'\nwidth=32", 32);
        let e = estimate(&small, &DataShape::of(&small).unwrap(), None);
        assert!(e.total() < 50e6, "{e:?}");
        // Within every bound, too big together: 10^9 rows of 1000 features.
        let big = cfg("kind='gaussian'\ndim=1000\nn_train=1000000000", "kind='mlp'\nwidth=32", 32);
        let e = estimate(&big, &DataShape::of(&big).unwrap(), None);
        assert!(e.data > 1e12, "{e:?}");
        let wide = cfg("kind='gaussian'\ndim=8", "kind='mlp'\nwidth=65536\ndepth=1000", 32);
        assert!(estimate(&wide, &DataShape::of(&wide).unwrap(), None).model > 1e13);
        if mem_total().is_some() {
            assert!(fits(&small, &DataShape::of(&small).unwrap(), None).is_ok());
            let err = fits(&big, &DataShape::of(&big).unwrap(), None).unwrap_err();
            assert!(err.contains("needs about") && err.contains("MemTotal"), "{err}");
        }
    }
}
