//! Built-in tasks, generated on the fly from the run's seed (no downloads), and the
//! user's own CSV data. Every task is classification and splits into train and
//! held-out sets. Batches are a pure function of (seed, step), so a resumed run draws
//! the same batches as an uninterrupted one.

use crate::config::{ModOp, ModelKind, ModelSection, TaskKind, TaskSection};
use anyhow::{Context, Result, bail};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Kind;
use tch::{Device, Tensor};

/// What the model sees: token ids (for the transformer) or real-valued features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Inputs {
    Tokens { vocab: usize, seq_len: usize },
    Features { dim: usize },
}

pub struct Dataset {
    pub inputs: Inputs,
    pub classes: usize,
    pub train_x: Tensor,
    pub train_y: Tensor,
    /// The training labels on the host: a batch's labels are gathered here (the batch
    /// indices are drawn on the host anyway), which also lets the trainer score its
    /// accuracy without more device calls.
    pub train_y_host: Vec<i64>,
    pub val_x: Tensor,
    pub val_y: Tensor,
    /// One sample's shape as the model reads it (`[dim]` for features, `[seq_len]` for
    /// tokens, `[C, H, W]` for a cnn, the file's own for a TorchScript module).
    pub sample_shape: Vec<i64>,
    /// Regression targets `[rows, k]` (train, held-out) of a `tensors` task with float
    /// `y`: the model's `classes` outputs are then these k values, trained by `mse`
    /// (`train_y`/`val_y` hold zeros).
    pub targets: Option<(Tensor, Tensor)>,
    /// Training-row indices of each class, for class-weighted (mixture) sampling.
    by_class: Vec<Vec<i64>>,
    /// The task's generator, for fresh samples per batch (`[task] online = true`).
    generator: Option<Generator>,
    device: Device,
}

/// How a generated task draws one sample.
#[derive(Clone)]
enum Generator {
    Parity { dim: usize, k: usize },
    Gaussian { centres: Vec<Vec<f64>>, per_class: usize, spread: f64 },
}

impl Generator {
    /// Appends one sample's features to `x` and returns its label; `cluster` picks a
    /// Gaussian cluster (drawn uniformly when None).
    fn sample(&self, rng: &mut ChaCha8Rng, x: &mut Vec<f64>, cluster: Option<usize>) -> i64 {
        match self {
            Generator::Parity { dim, k } => {
                let start = x.len();
                for _ in 0..*dim {
                    x.push(if rng.random::<bool>() { 1.0 } else { -1.0 });
                }
                let prod: f64 = x[start..start + k].iter().product();
                (prod < 0.0) as i64
            }
            Generator::Gaussian { centres, per_class, spread } => {
                let cluster = cluster.unwrap_or_else(|| rng.random_range(0..centres.len()));
                x.extend(centres[cluster].iter().map(|&mu| mu + spread * normal(rng)));
                (cluster / per_class) as i64
            }
        }
    }
}

impl Dataset {
    /// The task's data for a `model` of this kind (token ids for the transformer,
    /// features for an MLP); see [`Dataset::build_for`] for an MLP with `embed`.
    pub fn build(task: &TaskSection, model: ModelKind, seed: u64, device: Device) -> Result<Dataset> {
        let form = if model == ModelKind::Transformer { ModularInputs::Sequence } else { ModularInputs::OneHot };
        Dataset::build_inputs(task, form, seed, device)
    }

    /// The task's data for this model: token ids when it reads tokens (a transformer,
    /// or an MLP with `embed`).
    pub fn build_for(task: &TaskSection, model: &ModelSection, seed: u64, device: Device) -> Result<Dataset> {
        let form = match (model.kind.get_ref(), model.embed()) {
            (ModelKind::Transformer, _) => ModularInputs::Sequence,
            (ModelKind::Mlp, Some(_)) => ModularInputs::Pair,
            _ => ModularInputs::OneHot,
        };
        if *task.kind.get_ref() == TaskKind::Tensors {
            return Dataset::from_tensors(read_tensors(task)?, *model.kind.get_ref(), device);
        }
        Dataset::build_inputs(task, form, seed, device)
    }

    /// A `tensors` task's data as `model` reads it: an MLP its inputs flattened, a cnn
    /// `[n, C, H, W]` (`[n, H, W]` gains one channel), a TorchScript module as stored.
    fn from_tensors(t: TensorData, model: ModelKind, device: Device) -> Result<Dataset> {
        let shape = |x: &Tensor| -> Result<Tensor> {
            Ok(match (model, x.dim()) {
                (ModelKind::Mlp, _) => x.flatten(1, -1),
                (ModelKind::Cnn, 3) => x.unsqueeze(1),
                (ModelKind::Cnn, 4) => x.shallow_clone(),
                (ModelKind::Cnn, _) => bail!(
                    "model \"cnn\" needs images: x_train of shape [n, H, W] or [n, C, H, W], the file has {:?}",
                    x.size()
                ),
                _ => x.shallow_clone(),
            })
        };
        let (train_x, val_x) = (shape(&t.x_train)?, shape(&t.x_val)?);
        let sample_shape = train_x.size()[1..].to_vec();
        let (targets, y_train, y_val) = if t.regression {
            let zeros = |y: &Tensor| Tensor::zeros([y.size()[0]], (Kind::Int64, Device::Cpu));
            let (zt, zv) = (zeros(&t.y_train), zeros(&t.y_val));
            (Some((t.y_train.to(device), t.y_val.to(device))), zt, zv)
        } else {
            (None, t.y_train, t.y_val)
        };
        let train_y_host: Vec<i64> = Vec::<i64>::try_from(&y_train).context("labels to the host")?;
        // Regression has no classes to weigh (`class_weights` is refused for it).
        let mut by_class = vec![Vec::new(); if t.regression { 0 } else { t.classes }];
        for (i, &c) in train_y_host.iter().enumerate() {
            if let Some(rows) = by_class.get_mut(c as usize) {
                rows.push(i as i64);
            }
        }
        Ok(Dataset {
            targets,
            inputs: Inputs::Features { dim: sample_shape.iter().product::<i64>() as usize },
            classes: t.classes,
            train_x: train_x.to(device),
            train_y: y_train.to(device),
            train_y_host,
            val_x: val_x.to(device),
            val_y: y_val.to(device),
            sample_shape,
            by_class,
            generator: None,
            device,
        })
    }

    fn build_inputs(task: &TaskSection, form: ModularInputs, seed: u64, device: Device) -> Result<Dataset> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_da7a);
        let (raw, generator) = match task.kind.get_ref() {
            TaskKind::Modular => (modular(task, form, &mut rng), None),
            TaskKind::Parity => {
                let g = Generator::Parity { dim: task.parity_dim(), k: task.parity_k() };
                (generate(task, &g, 2, &mut rng), Some(g))
            }
            TaskKind::Gaussian => {
                let (d, c, m) = (task.gaussian_dim(), task.classes(), task.clusters_per_class());
                let scale = task.centre_scale();
                let centres: Vec<Vec<f64>> =
                    (0..c * m).map(|_| (0..d).map(|_| scale * normal(&mut rng)).collect()).collect();
                let g = Generator::Gaussian { centres, per_class: m, spread: task.spread() };
                (generate(task, &g, c, &mut rng), Some(g))
            }
            TaskKind::Csv => (csv_task(task, &mut rng)?, None),
            TaskKind::Tensors => bail!("a tensors task is built by Dataset::build_for"),
        };
        let mut d = raw.into_dataset(device);
        d.generator = generator;
        Ok(d)
    }

    /// A batch of fresh samples for `step` (`[task] online = true`): a function of
    /// (seed, step) like every batch, from its own stream. With `class_weights` each
    /// sample's class is drawn first (Gaussian clusters only: validation refuses
    /// weights for online parity), then one of its clusters. None: the task generates
    /// no samples (modular, csv).
    pub fn online_batch(
        &self,
        seed: u64,
        step: u64,
        batch: usize,
        class_weights: Option<&[f64]>,
    ) -> Option<(Tensor, Vec<i64>)> {
        let g = self.generator.as_ref()?;
        let mut rng = step_rng(seed, step, 4);
        let dim = match self.inputs {
            Inputs::Features { dim } => dim,
            Inputs::Tokens { .. } => return None,
        };
        let mut x = Vec::with_capacity(batch * dim);
        let mut y = Vec::with_capacity(batch);
        let cumulative: Option<Vec<f64>> = class_weights.map(|w| {
            w.iter()
                .scan(0.0, |acc, v| {
                    *acc += v.max(0.0);
                    Some(*acc)
                })
                .collect()
        });
        for _ in 0..batch {
            let cluster = match (g, &cumulative) {
                (Generator::Gaussian { per_class, .. }, Some(cum)) if cum.last().is_some_and(|t| *t > 0.0) => {
                    let u = rng.random::<f64>() * cum[cum.len() - 1];
                    let class = cum.partition_point(|&c| c <= u).min(cum.len() - 1);
                    Some(class * per_class + rng.random_range(0..*per_class))
                }
                _ => None,
            };
            y.push(g.sample(&mut rng, &mut x, cluster));
        }
        let f: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let xt = Tensor::from_slice(&f).view([batch as i64, dim as i64]).to_device(self.device);
        Some((xt, y))
    }

    pub fn n_train(&self) -> usize {
        self.train_y.size()[0] as usize
    }

    /// Indices of a training batch for `step`, drawn with replacement; with
    /// `class_weights` (a phase's data mixture), each sample's class is drawn with those
    /// weights first, then a row of that class. Classes without training rows are
    /// skipped. Without weights a batch as large as the split is the whole split.
    pub fn batch_indices(&self, seed: u64, step: u64, batch: usize, class_weights: Option<&[f64]>) -> Vec<i64> {
        let n = self.n_train();
        let mut rng = step_rng(seed, step, 1);
        let Some(weights) = class_weights else {
            if batch >= n {
                return (0..n as i64).collect();
            }
            return (0..batch).map(|_| rng.random_range(0..n) as i64).collect();
        };
        let mut cumulative = Vec::with_capacity(self.by_class.len());
        let mut total = 0.0;
        for (rows, &w) in self.by_class.iter().zip(weights) {
            total += if rows.is_empty() { 0.0 } else { w.max(0.0) };
            cumulative.push(total);
        }
        if total <= 0.0 {
            return (0..batch.min(n)).map(|_| rng.random_range(0..n) as i64).collect();
        }
        (0..batch)
            .map(|_| {
                let u = rng.random::<f64>() * total;
                let class = cumulative.partition_point(|&c| c <= u).min(self.by_class.len() - 1);
                let rows = &self.by_class[class];
                rows[rng.random_range(0..rows.len())]
            })
            .collect()
    }

    /// Training rows per class.
    pub fn class_counts(&self) -> Vec<usize> {
        self.by_class.iter().map(Vec::len).collect()
    }
}

/// A generator private to one step and purpose, so that noise and sampling do not
/// depend on what happened at earlier steps.
pub fn step_rng(seed: u64, step: u64, purpose: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(step.wrapping_mul(16).wrapping_add(purpose));
    r
}

/// How modular arithmetic is presented: the tokens `a b =` (transformer), the tokens
/// `a b` (an MLP with `embed`), or one-hot(a) ++ one-hot(b) (an MLP).
#[derive(Clone, Copy)]
enum ModularInputs {
    Sequence,
    Pair,
    OneHot,
}

/// Host-side data before it becomes tensors.
struct Raw {
    inputs: Inputs,
    classes: usize,
    /// Row-major: tokens (i64 as f64 ids) or features.
    x: Vec<f64>,
    y: Vec<i64>,
    n_train: usize,
}

impl Raw {
    fn into_dataset(self, device: Device) -> Dataset {
        let width = match self.inputs {
            Inputs::Tokens { seq_len, .. } => seq_len,
            Inputs::Features { dim } => dim,
        } as i64;
        let n = self.y.len() as i64;
        let x = match self.inputs {
            Inputs::Tokens { .. } => {
                let ids: Vec<i64> = self.x.iter().map(|&v| v as i64).collect();
                Tensor::from_slice(&ids).view([n, width])
            }
            Inputs::Features { .. } => {
                let f: Vec<f32> = self.x.iter().map(|&v| v as f32).collect();
                Tensor::from_slice(&f).view([n, width])
            }
        };
        let mut by_class = vec![Vec::new(); self.classes];
        for (i, &c) in self.y[..self.n_train].iter().enumerate() {
            if let Some(rows) = by_class.get_mut(c as usize) {
                rows.push(i as i64);
            }
        }
        let y = Tensor::from_slice(&self.y);
        let nt = self.n_train as i64;
        Dataset {
            generator: None,
            device,
            by_class,
            targets: None,
            sample_shape: vec![width],
            inputs: self.inputs,
            classes: self.classes,
            train_x: x.narrow(0, 0, nt).to(device),
            train_y: y.narrow(0, 0, nt).to(device),
            train_y_host: self.y[..self.n_train].to_vec(),
            val_x: x.narrow(0, nt, n - nt).to(device),
            val_y: y.narrow(0, nt, n - nt).to(device),
        }
    }
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box–Muller; 1 - u keeps the log's argument in (0, 1].
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random::<f64>();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn mod_pow(mut b: usize, mut e: usize, p: usize) -> usize {
    let mut r = 1;
    b %= p;
    while e > 0 {
        if e & 1 == 1 {
            r = r * b % p;
        }
        b = b * b % p;
        e >>= 1;
    }
    r
}

/// a∘b mod p over every pair; a random `train_fraction` of pairs is the training set.
/// For the transformer, inputs are the tokens `a b =`; for an MLP with `embed`, the
/// tokens `a b`; for an MLP otherwise, one-hot(a) ++ one-hot(b).
fn modular(task: &TaskSection, form: ModularInputs, rng: &mut ChaCha8Rng) -> Raw {
    let p = task.modulus();
    let op = task.mod_op();
    let mut pairs: Vec<(usize, usize)> = Vec::with_capacity(p * p);
    for a in 0..p {
        for b in 0..p {
            if op == ModOp::Div && b == 0 {
                continue;
            }
            pairs.push((a, b));
        }
    }
    pairs.shuffle(rng);
    let label = |a: usize, b: usize| -> i64 {
        (match op {
            ModOp::Add => (a + b) % p,
            ModOp::Sub => (a + p - b) % p,
            ModOp::Mul => a * b % p,
            ModOp::Div => a * mod_pow(b, p - 2, p) % p,
        }) as i64
    };
    let n_train = ((pairs.len() as f64) * task.train_fraction()).round().max(1.0) as usize;
    let y = pairs.iter().map(|&(a, b)| label(a, b)).collect();
    let (inputs, x) = match form {
        ModularInputs::Sequence => {
            let eq = p as f64;
            let x = pairs.iter().flat_map(|&(a, b)| [a as f64, b as f64, eq]).collect();
            (Inputs::Tokens { vocab: p + 1, seq_len: 3 }, x)
        }
        ModularInputs::Pair => {
            let x = pairs.iter().flat_map(|&(a, b)| [a as f64, b as f64]).collect();
            (Inputs::Tokens { vocab: p, seq_len: 2 }, x)
        }
        ModularInputs::OneHot => {
            let mut x = vec![0.0; pairs.len() * 2 * p];
            for (i, &(a, b)) in pairs.iter().enumerate() {
                x[i * 2 * p + a] = 1.0;
                x[i * 2 * p + p + b] = 1.0;
            }
            (Inputs::Features { dim: 2 * p }, x)
        }
    };
    Raw { inputs, classes: p, x, y, n_train: n_train.min(pairs.len() - 1) }
}

/// `n_train + n_val` samples of a generated task (parity, gaussian), the first
/// `n_train` the training set. Parity: k-sparse parity on {−1, +1}^d, the label is
/// whether the product of the first k coordinates is −1 (for k = 2 that is XOR).
/// Gaussian: each class owns `clusters_per_class` centres (coordinates N(0,
/// centre_scale²)); a sample is a random centre plus isotropic noise of standard
/// deviation `spread`.
fn generate(task: &TaskSection, g: &Generator, classes: usize, rng: &mut ChaCha8Rng) -> Raw {
    let dim = match g {
        Generator::Parity { dim, .. } => *dim,
        Generator::Gaussian { centres, .. } => centres.first().map_or(0, Vec::len),
    };
    let n_train = task.n_train();
    let n = n_train + task.n_val();
    let mut x = Vec::with_capacity(n * dim);
    let y = (0..n).map(|_| g.sample(rng, &mut x, None)).collect();
    Raw { inputs: Inputs::Features { dim }, classes, x, y, n_train }
}

/// A csv task's (rows, feature columns, classes), read and checked as training reads it
/// (`trainer::memory::preflight`, so that `check` finds what training would refuse).
pub fn csv_dimensions(task: &TaskSection) -> Result<(usize, usize, usize)> {
    let raw = csv_task(task, &mut ChaCha8Rng::seed_from_u64(0))?;
    let dim = match raw.inputs {
        Inputs::Features { dim } => dim,
        Inputs::Tokens { seq_len, .. } => seq_len,
    };
    Ok((raw.y.len(), dim, raw.classes))
}

/// The user's CSV: a header row, numeric feature columns, a label column (class names
/// or integers). Features are standardised with the training split's statistics.
fn csv_task(task: &TaskSection, rng: &mut ChaCha8Rng) -> Result<Raw> {
    let path = task.path.as_ref().expect("validated").get_ref().clone();
    let label_col = task.label.as_ref().expect("validated").get_ref().clone();
    // A FIFO or a device would hang or never end: a regular file only.
    let file =
        phasetop_core::files::open_regular(std::path::Path::new(&path), "CSV file").map_err(anyhow::Error::msg)?;
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(file);
    let headers = reader.headers().with_context(|| format!("{path}:1: cannot read the header row"))?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let label_idx = col(&label_col).with_context(|| {
        format!("{path}:1: no column \"{label_col}\" (columns: {})", headers.iter().collect::<Vec<_>>().join(", "))
    })?;
    let feature_names: Vec<String> = match &task.features {
        Some(f) => f.get_ref().clone(),
        None => headers.iter().filter(|h| *h != label_col).map(str::to_string).collect(),
    };
    let mut feature_idx = Vec::new();
    for f in &feature_names {
        feature_idx.push(col(f).with_context(|| format!("{path}:1: no feature column \"{f}\""))?);
    }
    if feature_idx.is_empty() {
        bail!("{path}: no feature columns");
    }
    let mut rows: Vec<(Vec<f64>, String)> = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| anyhow::anyhow!("{path}:{line}: {e}"))?;
        let mut feats = Vec::with_capacity(feature_idx.len());
        for (&j, name) in feature_idx.iter().zip(&feature_names) {
            let cell = rec.get(j).unwrap_or("");
            let v: f64 = cell.parse().map_err(|_| {
                anyhow::anyhow!("{path}:{line}: column \"{name}\": cannot parse \"{cell}\" as a number")
            })?;
            if !v.is_finite() {
                bail!("{path}:{line}: column \"{name}\": value \"{cell}\" is not finite");
            }
            feats.push(v);
        }
        let label = rec.get(label_idx).unwrap_or("").to_string();
        if label.is_empty() {
            bail!("{path}:{line}: empty label in column \"{label_col}\"");
        }
        rows.push((feats, label));
    }
    if rows.len() < 4 {
        bail!("{path}: only {} data rows; need at least 4 to split into train and held-out sets", rows.len());
    }
    let mut classes: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
    classes.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        _ => a.cmp(b),
    });
    classes.dedup();
    if classes.len() < 2 {
        bail!("{path}: label column \"{label_col}\" has only one class");
    }
    rows.shuffle(rng);
    let n_val = ((rows.len() as f64) * task.val_fraction()).round().clamp(1.0, rows.len() as f64 - 1.0) as usize;
    let n_train = rows.len() - n_val;
    let d = feature_idx.len();
    let (mut mean, mut var) = (vec![0.0; d], vec![0.0; d]);
    for (f, _) in &rows[..n_train] {
        for j in 0..d {
            mean[j] += f[j] / n_train as f64;
        }
    }
    for (f, _) in &rows[..n_train] {
        for j in 0..d {
            var[j] += (f[j] - mean[j]).powi(2) / n_train as f64;
        }
    }
    let std: Vec<f64> = var.iter().map(|v| if *v > 0.0 { v.sqrt() } else { 1.0 }).collect();
    let mut x = Vec::with_capacity(rows.len() * d);
    let mut y = Vec::with_capacity(rows.len());
    for (f, label) in &rows {
        x.extend((0..d).map(|j| (f[j] - mean[j]) / std[j]));
        y.push(classes.iter().position(|c| c == label).expect("label seen") as i64);
    }
    Ok(Raw { inputs: Inputs::Features { dim: d }, classes: classes.len(), x, y, n_train })
}

/// Replaces a `fraction` of `labels` with random classes, deterministically per step.
pub fn add_label_noise(labels: &mut [i64], classes: usize, fraction: f64, seed: u64, step: u64) {
    if fraction <= 0.0 {
        return;
    }
    let mut rng = step_rng(seed, step, 2);
    for v in labels.iter_mut() {
        if rng.random::<f64>() < fraction {
            *v = rng.random_range(0..classes) as i64;
        }
    }
}

/// Gaussian input noise of standard deviation `std`, deterministic per step.
pub fn noisy_inputs(x: &Tensor, std: f64, seed: u64, step: u64) -> Tensor {
    if std <= 0.0 {
        return x.shallow_clone();
    }
    let mut rng = step_rng(seed, step, 3);
    let n = x.numel();
    let noise: Vec<f32> = (0..n).map(|_| (std * normal(&mut rng)) as f32).collect();
    x + Tensor::from_slice(&noise).view(x.size().as_slice()).to_device(x.device())
}

/// A phase's `class_weights` against the data: one weight per class, and some class
/// with a positive weight has training rows (else the mixture could draw nothing).
pub fn check_mixture(phase: &str, weights: &[f64], class_counts: &[usize]) -> std::result::Result<(), String> {
    if weights.len() != class_counts.len() {
        return Err(format!(
            "phase \"{phase}\": class_weights has {} entries, the data has {} classes",
            weights.len(),
            class_counts.len()
        ));
    }
    if !weights.iter().zip(class_counts).any(|(w, n)| *w > 0.0 && *n > 0) {
        let weighted: Vec<String> =
            weights.iter().enumerate().filter(|(_, w)| **w > 0.0).map(|(i, _)| i.to_string()).collect();
        return Err(format!(
            "phase \"{phase}\": class_weights weighs only classes with no training examples (class {})",
            weighted.join(", ")
        ));
    }
    Ok(())
}

/// A `tensors` task's file, read and checked: `x_train`, `y_train`, `x_val`, `y_val`;
/// inputs of a floating-point type (any shape, the same per sample in both splits,
/// finite), labels of an integer type, one per input row, in [0, classes) where
/// `classes` is the largest label + 1 (at least 2). Inputs become f32, labels i64.
pub struct TensorData {
    pub x_train: Tensor,
    pub y_train: Tensor,
    pub x_val: Tensor,
    pub y_val: Tensor,
    /// Classes, or for regression the number of target values per row.
    pub classes: usize,
    /// Float `y`: regression targets `[rows, k]` (f32) instead of class labels.
    pub regression: bool,
}

pub const TENSOR_KEYS: [&str; 4] = ["x_train", "y_train", "x_val", "y_val"];

/// Reads a `tensors` task's file (`[task] path`); every error names the file and what
/// is wrong with which tensor.
pub fn read_tensors(task: &TaskSection) -> Result<TensorData> {
    let path = task.path.as_ref().expect("validated").get_ref().clone();
    phasetop_core::files::open_regular(std::path::Path::new(&path), "the data file").map_err(anyhow::Error::msg)?;
    let tensors = Tensor::read_safetensors(&path).map_err(|e| {
        let why = e.to_string();
        anyhow::anyhow!(
            "{path}: not a safetensors file ({}); write one with safetensors.torch.save_file({{\"x_train\": …, \"y_train\": …, \"x_val\": …, \"y_val\": …}}, path)",
            why.lines().next().unwrap_or("").trim()
        )
    })?;
    let mut names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_by_key(|n| (TENSOR_KEYS.iter().position(|k| k == n).unwrap_or(4), *n));
    let get = |key: &str| -> Result<Tensor> {
        tensors.iter().find(|(n, _)| n == key).map(|(_, t)| t.shallow_clone()).with_context(|| {
            format!(
                "{path}: no tensor \"{key}\" (it holds {}; expected x_train, y_train, x_val, y_val)",
                names.join(", ")
            )
        })
    };
    let (x_train, y_train, x_val, y_val) = (get("x_train")?, get("y_train")?, get("x_val")?, get("y_val")?);
    for (key, x) in [("x_train", &x_train), ("x_val", &x_val)] {
        if !x.is_floating_point() {
            bail!(
                "{path}: {key} is {:?}; inputs must be floating point (float32, float64, float16, bfloat16)",
                x.kind()
            );
        }
        if x.dim() < 2 || x.size()[0] < 1 {
            bail!("{path}: {key} has shape {:?}; expected [rows, …] with at least one row and one feature", x.size());
        }
    }
    if x_train.size()[1..] != x_val.size()[1..] {
        bail!(
            "{path}: x_train's samples have shape {:?}, x_val's {:?}; they must be the same",
            &x_train.size()[1..],
            &x_val.size()[1..]
        );
    }
    let (x_train, x_val) = (x_train.to_kind(Kind::Float), x_val.to_kind(Kind::Float));
    for (key, x) in [("x_train", &x_train), ("x_val", &x_val)] {
        if x.isfinite().all().int64_value(&[]) == 0 {
            bail!("{path}: {key} holds values that are not finite (NaN or ±inf)");
        }
    }
    if y_train.is_floating_point() || y_val.is_floating_point() {
        return regression_targets(&path, x_train, y_train, x_val, y_val);
    }
    let integer = |k: Kind| matches!(k, Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8);
    for (key, y, x, xkey) in [("y_train", &y_train, &x_train, "x_train"), ("y_val", &y_val, &x_val, "x_val")] {
        if !integer(y.kind()) {
            bail!("{path}: {key} is {:?}; labels must be integers (int64, int32, int16, int8, uint8)", y.kind());
        }
        if y.dim() != 1 || y.size()[0] != x.size()[0] {
            bail!("{path}: {key} has shape {:?}; expected one label per row of {xkey}: [{}]", y.size(), x.size()[0]);
        }
    }
    let (y_train, y_val) = (y_train.to_kind(Kind::Int64), y_val.to_kind(Kind::Int64));
    let min = y_train.min().int64_value(&[]).min(y_val.min().int64_value(&[]));
    if min < 0 {
        bail!("{path}: labels must be class indices ≥ 0, found {min}");
    }
    // The range first: `max + 1` of i64::MAX would wrap and read as "one class".
    let max = y_train.max().int64_value(&[]).max(y_val.max().int64_value(&[]));
    if max >= 100_000 {
        bail!("{path}: label {max} is out of range: labels are class indices in [0, 100000)");
    }
    let classes = max + 1;
    if classes < 2 {
        bail!("{path}: the labels hold only one class (0); classification needs at least 2");
    }
    Ok(TensorData { x_train, y_train, x_val, y_val, classes: classes as usize, regression: false })
}

/// Float `y`: regression targets, `[rows]` or `[rows, k]` (the same k in both splits),
/// finite; read as f32 `[rows, k]`.
fn regression_targets(
    path: &str,
    x_train: Tensor,
    y_train: Tensor,
    x_val: Tensor,
    y_val: Tensor,
) -> Result<TensorData> {
    let mut ys = Vec::new();
    for (key, y, x, xkey) in [("y_train", &y_train, &x_train, "x_train"), ("y_val", &y_val, &x_val, "x_val")] {
        if !y.is_floating_point() {
            bail!("{path}: {key} is {:?} but the other split's targets are floats; use one kind for both", y.kind());
        }
        if !(1..=2).contains(&y.dim()) || y.size()[0] != x.size()[0] {
            bail!(
                "{path}: {key} has shape {:?}; expected one target per row of {xkey}: [{}] or [{}, k]",
                y.size(),
                x.size()[0],
                x.size()[0]
            );
        }
        let y = y.to_kind(Kind::Float);
        let y = if y.dim() == 1 { y.unsqueeze(1) } else { y };
        if y.isfinite().all().int64_value(&[]) == 0 {
            bail!("{path}: {key} holds targets that are not finite (NaN or ±inf)");
        }
        ys.push(y);
    }
    let (y_val, y_train) = (ys.pop().expect("two"), ys.pop().expect("two"));
    if y_train.size()[1] != y_val.size()[1] || y_train.size()[1] < 1 {
        bail!(
            "{path}: y_train has {} target values per row, y_val {}; they must be the same",
            y_train.size()[1],
            y_val.size()[1]
        );
    }
    let k = y_train.size()[1] as usize;
    Ok(TensorData { x_train, y_train, x_val, y_val, classes: k, regression: true })
}
