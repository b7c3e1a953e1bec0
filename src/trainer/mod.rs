//! The trainer: owns every tensor (model, data, optimizer state) on one thread; only
//! plain numbers leave it. Phases, overrides and checkpoints are applied here, between
//! steps, by the host's run loop.

pub mod checkpoint;
pub mod data;
pub mod model;
pub mod optim;
pub mod schedule;

use crate::config::{Config, DeviceChoice, LossKind, Phase};
use crate::event::Metrics;
use anyhow::{Result, bail};
use data::Dataset;
use model::{Feature, Model};
use optim::{Hyper, Optimizer};
use tch::{Device, Kind, Reduction, Tensor, nn};

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

/// Keys accepted by [`Trainer::set`].
pub const SETTABLE_KEYS: &[&str] = &["lr", "weight_decay", "momentum", "batch_size", "label_noise"];

pub struct Trainer {
    cfg: Config,
    seed: u64,
    device: Device,
    // Owns the variables the model and optimizer hold handles to.
    _vs: nn::VarStore,
    model: Model,
    data: Dataset,
    /// Trainable variables in a fixed (name-sorted) order, with the layer each belongs to.
    params: Vec<(String, Tensor)>,
    layer_of: Vec<String>,
    /// Values at initialisation, for the distance-from-init metric.
    init: Vec<Tensor>,
    init_flat: Tensor,
    /// Every parameter's storage, contiguous: the parameters are views into it, so
    /// ‖θ‖ and ‖θ − θ₀‖ take one op each instead of a copy of every parameter per step.
    params_flat: Tensor,
    frozen: Vec<bool>,
    optim: Optimizer,
    /// Steps completed so far (the next step is `step + 1`).
    step: u64,
    phase_index: usize,
    /// Global step at which the current phase began.
    phase_start: u64,
    overrides: Overrides,
    probe_x: Tensor,
    /// Per-step metrics beyond the loss (accuracy, norms); off only in benchmarks.
    full_metrics: bool,
}

pub fn resolve_device(choice: DeviceChoice) -> Result<Device> {
    Ok(match choice {
        DeviceChoice::Cpu => Device::Cpu,
        DeviceChoice::Auto => Device::cuda_if_available(),
        DeviceChoice::Cuda(n) => {
            if !tch::Cuda::is_available() || n >= tch::Cuda::device_count() as usize {
                bail!("device cuda:{n} requested but CUDA reports {} device(s)", tch::Cuda::device_count());
            }
            Device::Cuda(n)
        }
    })
}

pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

impl Trainer {
    pub fn new(cfg: &Config, seed: u64) -> Result<Trainer> {
        let device = resolve_device(cfg.run.device)?;
        if cfg.run.threads > 0 {
            tch::set_num_threads(cfg.run.threads as i32);
        }
        tch::manual_seed(seed as i64);
        if let Device::Cuda(_) = device {
            tch::Cuda::manual_seed_all(seed);
        }
        let data = Dataset::build(&cfg.task, *cfg.model.kind.get_ref(), seed, device)?;
        for p in &cfg.phases {
            if let Some(w) = &p.class_weights {
                // Only a csv task's class count is unknown until its file is read.
                anyhow::ensure!(
                    w.get_ref().len() == data.classes,
                    "phase \"{}\": class_weights has {} entries, the data has {} classes",
                    p.name(),
                    w.get_ref().len(),
                    data.classes
                );
            }
        }
        let vs = nn::VarStore::new(device);
        let model = Model::new(&vs.root(), &cfg.model, data.inputs, data.classes);
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        let scale = cfg.model.init_scale();
        if scale != 1.0 {
            tch::no_grad(|| named.iter_mut().for_each(|(_, v)| drop(v.g_mul_scalar_(scale))));
        }
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let params_flat = flatten_into_one(&mut named);
        let layers = cfg.model.layer_names();
        let layer_of = named
            .iter()
            .map(|(n, _)| {
                layers
                    .iter()
                    .filter(|l| n.starts_with(&format!("{l}.")))
                    .max_by_key(|l| l.len())
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        // The initial weights in one flat tensor; `init` holds views into it, so a restore
        // that copies into them also updates the flat copy distance-from-init reads.
        let (init_flat, init) = tch::no_grad(|| {
            let flat = Tensor::cat(&named.iter().map(|(_, t)| t.detach().view(-1)).collect::<Vec<_>>(), 0);
            let mut offset = 0;
            let views = named
                .iter()
                .map(|(_, t)| {
                    let n = t.numel() as i64;
                    let v = flat.narrow(0, offset, n).view(t.size().as_slice());
                    offset += n;
                    v
                })
                .collect();
            (flat, views)
        });
        let optim = Optimizer::new(cfg.phases[0].optimizer(), &named);
        let n_probe = (*cfg.probes.batch.get_ref() as i64).min(data.val_y.size()[0]).max(1);
        let probe_x = data.val_x.narrow(0, 0, n_probe);
        let mut t = Trainer {
            cfg: cfg.clone(),
            seed,
            device,
            _vs: vs,
            model,
            data,
            frozen: vec![false; named.len()],
            params: named,
            layer_of,
            init,
            init_flat,
            params_flat,
            optim,
            step: 0,
            phase_index: 0,
            phase_start: 0,
            overrides: Overrides::default(),
            probe_x,
            full_metrics: true,
        };
        t.apply_freeze();
        Ok(t)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn device(&self) -> Device {
        self.device
    }
    pub fn step(&self) -> u64 {
        self.step
    }
    pub fn phase_index(&self) -> usize {
        self.phase_index
    }
    pub fn phase(&self) -> &Phase {
        &self.cfg.phases[self.phase_index]
    }
    pub fn phase_start(&self) -> u64 {
        self.phase_start
    }
    pub fn overrides(&self) -> &Overrides {
        &self.overrides
    }
    /// Classes in the data (a csv task's count is known only once its file is read).
    pub fn classes(&self) -> usize {
        self.data.classes
    }
    /// Training rows per class.
    pub fn class_counts(&self) -> Vec<usize> {
        self.data.class_counts()
    }
    pub fn parameter_count(&self) -> i64 {
        self.params.iter().map(|(_, t)| t.numel() as i64).sum()
    }

    /// Steps taken in the current phase.
    pub fn steps_in_phase(&self) -> u64 {
        self.step - self.phase_start
    }

    /// Whether the current phase has run its step count.
    pub fn phase_finished(&self) -> bool {
        self.phase().steps().is_some_and(|n| self.steps_in_phase() >= n)
    }

    /// The learning rate the next step will use.
    pub fn current_lr(&self) -> f64 {
        let p = self.phase();
        schedule::lr_at(p, self.overrides.lr.unwrap_or(p.lr()), self.steps_in_phase())
    }

    fn hyper(&self) -> Hyper {
        let p = self.phase();
        let (beta1, beta2) = p.betas();
        Hyper {
            lr: self.current_lr(),
            weight_decay: self.overrides.weight_decay.unwrap_or(p.weight_decay()),
            momentum: self.overrides.momentum.unwrap_or(p.momentum()),
            beta1,
            beta2,
            eps: 1e-8,
        }
    }

    fn apply_freeze(&mut self) {
        let frozen_layers = self.phase().frozen();
        for (i, (_, t)) in self.params.iter_mut().enumerate() {
            let f = frozen_layers.contains(&self.layer_of[i]);
            self.frozen[i] = f;
            let _ = t.set_requires_grad(!f);
        }
    }

    /// One optimisation step; returns its metrics. A non-finite loss skips the update
    /// so the weights stay usable, and is reported in the metrics.
    pub fn train_step(&mut self) -> Metrics {
        let next = self.step + 1;
        let phase = self.phase().clone();
        let batch = self.overrides.batch_size.unwrap_or(phase.batch_size());
        let idx = Tensor::from_slice(&self.data.batch_indices(
            self.seed,
            next,
            batch,
            phase.class_weights.as_ref().map(|w| w.get_ref().as_slice()),
        ))
        .to_device(self.device);
        let x = self.data.train_x.index_select(0, &idx);
        let x = data::noisy_inputs(&x, phase.input_noise(), self.seed, next);
        let y = self.data.train_y.index_select(0, &idx);
        let y = data::noisy_labels(
            &y,
            self.data.classes,
            self.overrides.label_noise.unwrap_or(phase.label_noise()),
            self.seed,
            next,
        );
        let hyper = self.hyper();

        self.optim.zero_grad();
        let (logits, _) = self.model.forward(&x, false);
        let mut terms: Vec<(LossKind, Tensor)> = Vec::new();
        let mut total: Option<Tensor> = None;
        for (kind, weight) in phase.loss_terms() {
            let value = self.loss_term(kind, &logits, &y);
            let weighted = if weight == 1.0 { value.shallow_clone() } else { &value * weight };
            total = Some(match total {
                None => weighted,
                Some(t) => t + weighted,
            });
            terms.push((kind, value));
        }
        let total = total.expect("validated: at least one loss term");
        let loss = total.double_value(&[]);
        let mut m = Metrics::new();
        m.insert("train_loss".into(), loss);
        m.insert("lr".into(), hyper.lr);
        let align_every = self.cfg.probes.every;
        if loss.is_finite() && terms.len() > 1 && align_every > 0 && next % align_every == 0 {
            self.gradient_alignment(&terms, &mut m);
        }
        if loss.is_finite() {
            total.backward();
            // The optimizer reads the gradients without changing them, so their norm can
            // be taken with the other statistics after the update.
            self.optim.step(&hyper, &self.frozen);
        }
        self.step = next;
        if !self.full_metrics {
            return m;
        }
        let stats = self.step_stats(&logits, &y, &terms, loss.is_finite());
        let mut stats = stats.into_iter();
        let mut next_stat = || stats.next().expect("one value per statistic");
        m.insert("train_acc".into(), next_stat());
        m.insert("grad_norm".into(), if loss.is_finite() { next_stat() } else { f64::NAN });
        m.insert("weight_norm".into(), next_stat());
        m.insert("dist_init".into(), next_stat());
        if terms.len() > 1 {
            for (kind, _) in &terms {
                m.insert(format!("loss/{}", kind.as_str()), next_stat());
            }
        }
        m
    }

    /// Train accuracy, gradient norm (when there are gradients), ‖θ‖, ‖θ − θ₀‖ and each
    /// loss term, in that order, with one device-to-host copy: at ~1 ms per step each
    /// extra libtorch call and host round trip is a visible share of the step.
    fn step_stats(&self, logits: &Tensor, y: &Tensor, terms: &[(LossKind, Tensor)], with_grad: bool) -> Vec<f64> {
        tch::no_grad(|| {
            let n = y.size()[0].max(1) as f64;
            let mut parts = vec![logits.argmax(-1, false).eq_tensor(y).sum(Kind::Float) / n];
            if with_grad {
                let grads: Vec<Tensor> =
                    self.params.iter().map(|(_, p)| p.grad()).filter(|g| g.defined()).map(|g| g.view(-1)).collect();
                parts.push(if grads.is_empty() {
                    logits.zeros_like().sum(Kind::Float)
                } else {
                    Tensor::cat(&grads, 0).norm()
                });
            }
            parts.push(self.params_flat.norm());
            parts.push(self.params_flat.dist(&self.init_flat));
            if terms.len() > 1 {
                parts.extend(terms.iter().map(|(_, v)| v.detach()));
            }
            Vec::<f64>::try_from(Tensor::stack(&parts, 0).to_kind(Kind::Double)).expect("f64 statistics")
        })
    }

    fn loss_term(&self, kind: LossKind, logits: &Tensor, y: &Tensor) -> Tensor {
        match kind {
            LossKind::CrossEntropy => logits.cross_entropy_for_logits(y),
            LossKind::Mse => {
                let target = y.one_hot(self.data.classes as i64).to_kind(Kind::Float);
                logits.mse_loss(&target, Reduction::Mean)
            }
            LossKind::L2 => {
                let mut acc = Tensor::zeros([], (Kind::Float, self.device));
                for ((_, p), &f) in self.params.iter().zip(&self.frozen) {
                    if !f {
                        acc = acc + p.square().sum(Kind::Float);
                    }
                }
                acc * 0.5
            }
        }
    }

    /// Cosine between the gradients of each pair of loss terms (unweighted: a positive
    /// weight does not change the angle), as `grad_cos/<a>~<b>` (names sorted). One extra backward per
    /// term, keeping the graph for the real backward that follows.
    fn gradient_alignment(&self, terms: &[(LossKind, Tensor)], m: &mut Metrics) {
        let trainable: Vec<&Tensor> =
            self.params.iter().zip(&self.frozen).filter(|(_, f)| !**f).map(|(p, _)| &p.1).collect();
        if trainable.is_empty() {
            return;
        }
        let flat: Vec<Tensor> = terms
            .iter()
            .map(|(_, value)| {
                let grads = Tensor::run_backward(&[value], &trainable, true, false);
                // A term that does not reach a parameter (L2 over frozen ones, or the
                // data terms for none) leaves it undefined: its gradient there is zero.
                let parts: Vec<Tensor> = grads
                    .iter()
                    .zip(&trainable)
                    .map(|(g, p)| if g.defined() { g.view(-1) } else { p.zeros_like().view(-1) })
                    .collect();
                Tensor::cat(&parts, 0).to_kind(Kind::Double)
            })
            .collect();
        for i in 0..terms.len() {
            for j in i + 1..terms.len() {
                let (a, b) = (&flat[i], &flat[j]);
                let denom = a.norm().double_value(&[]) * b.norm().double_value(&[]);
                let cos = if denom > 0.0 { a.dot(b).double_value(&[]) / denom } else { f64::NAN };
                m.insert(crate::event::grad_cos_metric(terms[i].0.as_str(), terms[j].0.as_str()), cos);
            }
        }
    }

    /// Loss and accuracy on the held-out split (capped by `eval.max_samples`).
    pub fn evaluate(&self) -> Metrics {
        tch::no_grad(|| {
            let n_all = self.data.val_y.size()[0];
            let n = match self.cfg.eval.max_samples {
                0 => n_all,
                cap => n_all.min(cap as i64),
            };
            let (mut loss_sum, mut correct) = (0.0, 0.0);
            let chunk = 4096;
            let mut start = 0;
            while start < n {
                let len = chunk.min(n - start);
                let x = self.data.val_x.narrow(0, start, len);
                let y = self.data.val_y.narrow(0, start, len);
                let (logits, _) = self.model.forward(&x, false);
                loss_sum += logits.cross_entropy_loss::<Tensor>(&y, None, Reduction::Sum, -100, 0.0).double_value(&[]);
                correct +=
                    logits.argmax(-1, false).eq_tensor(&y).to_kind(Kind::Float).sum(Kind::Float).double_value(&[]);
                start += len;
            }
            let n = n.max(1) as f64;
            Metrics::from([("val_loss".to_string(), loss_sum / n), ("val_acc".to_string(), correct / n)])
        })
    }

    /// Each named layer's output on the fixed probe batch (for probes).
    pub fn probe_features(&self) -> Vec<Feature> {
        tch::no_grad(|| self.model.forward(&self.probe_x, true).1)
    }

    /// Makes phase `index` current, between steps. Returns a note when optimizer state
    /// was dropped (a `reset_optimizer` phase, or a change between SGD and Adam).
    pub fn switch_to(&mut self, index: usize) -> Option<String> {
        self.phase_index = index;
        self.phase_start = self.step;
        self.overrides = Overrides::default();
        let phase = self.phase().clone();
        self.apply_freeze();
        let from = self.optim.kind();
        if phase.reset_optimizer {
            self.optim.set_kind(phase.optimizer());
            self.optim.reset();
            return Some("optimizer state reset (reset_optimizer = true)".into());
        }
        if self.optim.set_kind(phase.optimizer()) {
            return Some(format!("optimizer state dropped: {from} → {} do not share state", phase.optimizer()));
        }
        None
    }

    /// Applies `set KEY=VALUE` for the rest of the current phase. The message says what
    /// the next step will use.
    pub fn set(&mut self, key: &str, value: f64) -> std::result::Result<String, String> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        match key {
            "lr" if positive(value) => self.overrides.lr = Some(value),
            "weight_decay" if non_negative(value) => self.overrides.weight_decay = Some(value),
            "momentum" if non_negative(value) && value < 1.0 => self.overrides.momentum = Some(value),
            "batch_size" if value >= 1.0 && value.fract() == 0.0 => self.overrides.batch_size = Some(value as usize),
            "label_noise" if (0.0..=1.0).contains(&value) => self.overrides.label_noise = Some(value),
            k if SETTABLE_KEYS.contains(&k) => {
                return Err(format!("invalid value {value} for {key}"));
            }
            _ => {
                return Err(format!("unknown key \"{key}\", expected one of {}", SETTABLE_KEYS.join(", ")));
            }
        }
        Ok(match key {
            "lr" => format!("lr = {value} (next step uses {:.6e} after the phase's schedule)", self.current_lr()),
            _ => format!("{key} = {value}"),
        })
    }

    /// Turns the per-step metrics beyond loss and lr on or off (benchmarks measure the
    /// monitoring overhead with them off).
    pub fn set_full_metrics(&mut self, on: bool) {
        self.full_metrics = on;
    }

    /// Replaces the plan's phases (the caller checks that those already run are the
    /// same); the current phase keeps its index.
    pub fn replace_future_phases(&mut self, phases: Vec<Phase>) {
        self.cfg.phases = phases;
    }

    /// Drops the optimizer's state (moments, momentum buffers).
    pub fn reset_optimizer(&mut self) {
        self.optim.reset();
    }

    /// Trainable variables by name, in a fixed order.
    pub fn parameters(&self) -> &[(String, Tensor)] {
        &self.params
    }

    pub(crate) fn named_params(&self) -> &[(String, Tensor)] {
        &self.params
    }
    pub(crate) fn init_params(&self) -> &[Tensor] {
        &self.init
    }
    pub(crate) fn optimizer(&self) -> &Optimizer {
        &self.optim
    }
    pub(crate) fn optimizer_mut(&mut self) -> &mut Optimizer {
        &mut self.optim
    }
    /// Sets the position after a restore.
    pub(crate) fn set_position(&mut self, step: u64, phase_index: usize, phase_start: u64, overrides: Overrides) {
        self.step = step;
        self.phase_index = phase_index;
        self.phase_start = phase_start;
        self.overrides = overrides;
        let kind = self.phase().optimizer();
        self.optim.set_kind(kind);
        self.apply_freeze();
    }
}

/// Moves every parameter's data into one contiguous tensor and makes each parameter a
/// view into it (same values, same autograd leaf); returns that tensor. In-place updates
/// and restores (`copy_`) of a parameter then write into it.
fn flatten_into_one(named: &mut [(String, Tensor)]) -> Tensor {
    tch::no_grad(|| {
        let flat = Tensor::cat(&named.iter().map(|(_, t)| t.detach().view(-1)).collect::<Vec<_>>(), 0);
        let mut offset = 0;
        for (_, t) in named.iter_mut() {
            let n = t.numel() as i64;
            t.set_data(&flat.narrow(0, offset, n).view(t.size().as_slice()));
            offset += n;
        }
        flat
    })
}
