//! Typed accessors that fill in documented defaults for optional settings.

use super::*;

fn int(v: &Option<Spanned<i64>>, default: i64) -> usize {
    v.as_ref().map_or(default, |s| *s.get_ref()).max(0) as usize
}

impl TaskSection {
    pub fn modulus(&self) -> usize {
        int(&self.p, 97)
    }
    pub fn mod_op(&self) -> ModOp {
        self.op.unwrap_or(ModOp::Add)
    }
    pub fn train_fraction(&self) -> f64 {
        self.train_fraction.as_ref().map_or(0.3, |s| *s.get_ref())
    }
    pub fn parity_dim(&self) -> usize {
        int(&self.dim, 20)
    }
    pub fn parity_k(&self) -> usize {
        int(&self.k, 2)
    }
    pub fn gaussian_dim(&self) -> usize {
        int(&self.dim, 16)
    }
    pub fn classes(&self) -> usize {
        int(&self.classes, 4)
    }
    pub fn clusters_per_class(&self) -> usize {
        int(&self.clusters_per_class, 2)
    }
    pub fn spread(&self) -> f64 {
        self.spread.unwrap_or(1.0)
    }
    pub fn n_train(&self) -> usize {
        int(&self.n_train, 2048)
    }
    /// The number of classes when the config alone determines it (not for `csv`,
    /// whose labels come from the file).
    pub fn known_classes(&self) -> Option<usize> {
        match self.kind.get_ref() {
            TaskKind::Modular => Some(self.modulus()),
            TaskKind::Parity => Some(2),
            TaskKind::Gaussian => Some(self.classes()),
            TaskKind::Csv | TaskKind::Tensors => None,
        }
    }
    pub fn n_val(&self) -> usize {
        int(&self.n_val, 1024)
    }
    pub fn val_fraction(&self) -> f64 {
        self.val_fraction.as_ref().map_or(0.2, |s| *s.get_ref())
    }
    pub fn online(&self) -> bool {
        self.online.as_ref().is_some_and(|s| *s.get_ref())
    }
    pub fn centre_scale(&self) -> f64 {
        self.centre_scale.as_ref().map_or(2.0, |s| *s.get_ref())
    }
}

impl ModelSection {
    pub fn mlp_depth(&self) -> usize {
        int(&self.depth, 2)
    }
    pub fn mlp_width(&self) -> usize {
        int(&self.width, 128)
    }
    pub fn activation(&self) -> Activation {
        self.activation.unwrap_or(Activation::Relu)
    }
    pub fn init_scale(&self) -> f64 {
        self.init_scale.as_ref().map_or(1.0, |s| *s.get_ref())
    }
    /// `torch` unless the config says otherwise.
    pub fn init(&self) -> InitKind {
        self.init.as_ref().map_or(InitKind::Torch, |s| *s.get_ref())
    }
    /// The MLP's token-embedding width (None: one-hot inputs).
    pub fn embed(&self) -> Option<usize> {
        match self.kind.get_ref() {
            ModelKind::Mlp => self.embed.as_ref().map(|s| (*s.get_ref()).max(1) as usize),
            _ => None,
        }
    }
    pub fn embed_shared(&self) -> bool {
        self.embed_shared.as_ref().is_none_or(|s| *s.get_ref())
    }
    /// Whether the model reads token ids (a transformer, or an MLP with `embed`).
    pub fn reads_tokens(&self) -> bool {
        *self.kind.get_ref() == ModelKind::Transformer || self.embed().is_some()
    }
    pub fn transformer_d_model(&self) -> usize {
        int(&self.d_model, 128)
    }
    pub fn transformer_heads(&self) -> usize {
        int(&self.heads, 4)
    }
    pub fn transformer_layers(&self) -> usize {
        int(&self.layers, 1)
    }
    pub fn transformer_d_ff(&self) -> usize {
        int(&self.d_ff, 4 * self.transformer_d_model() as i64)
    }
    pub fn positional(&self) -> bool {
        self.positional.unwrap_or(true)
    }
    pub fn cnn_channels(&self) -> Vec<usize> {
        self.channels.as_ref().map_or(vec![32, 64], |c| c.get_ref().iter().map(|&n| n.max(1) as usize).collect())
    }
    pub fn cnn_batch_norm(&self) -> bool {
        self.batch_norm.as_ref().is_some_and(|s| *s.get_ref())
    }
    pub fn cnn_pool(&self) -> PoolKind {
        self.pool.as_ref().map_or(PoolKind::Max, |s| *s.get_ref())
    }

    /// Names of the model's layers, the handles for probes and `freeze`.
    pub fn layer_names(&self) -> Vec<String> {
        match self.kind.get_ref() {
            ModelKind::Mlp => self
                .embed()
                .map(|_| "embed".to_string())
                .into_iter()
                .chain((0..self.mlp_depth()).map(|i| format!("mlp.{i}")))
                .chain(std::iter::once("head".to_string()))
                .collect(),
            ModelKind::Cnn => (0..self.cnn_channels().len())
                .map(|i| format!("conv.{i}"))
                .chain(std::iter::once("head".to_string()))
                .collect(),
            // Known once the module is loaded (`trainer::script`).
            ModelKind::TorchScript => Vec::new(),
            ModelKind::Transformer => {
                let mut names = vec!["embed".to_string()];
                for i in 0..self.transformer_layers() {
                    names.push(format!("block.{i}.attn"));
                    names.push(format!("block.{i}.mlp"));
                }
                names.push("head".to_string());
                names
            }
        }
    }
}

impl Phase {
    pub fn name(&self) -> &str {
        self.name.get_ref()
    }
    pub fn steps(&self) -> Option<u64> {
        self.steps.as_ref().map(|s| *s.get_ref())
    }
    pub fn optimizer(&self) -> OptimizerKind {
        *self.optimizer.get_ref()
    }
    pub fn lr(&self) -> f64 {
        *self.lr.get_ref()
    }
    pub fn weight_decay(&self) -> f64 {
        self.weight_decay.as_ref().map_or(0.0, |s| *s.get_ref())
    }
    pub fn momentum(&self) -> f64 {
        self.momentum.as_ref().map_or(0.0, |s| *s.get_ref())
    }
    pub fn betas(&self) -> (f64, f64) {
        self.betas.as_ref().map_or((0.9, 0.999), |s| *s.get_ref())
    }
    pub fn schedule(&self) -> ScheduleKind {
        self.schedule.as_ref().map_or(ScheduleKind::Constant, |s| *s.get_ref())
    }
    pub fn warmup_steps(&self) -> u64 {
        self.warmup_steps.as_ref().map_or(0, |s| *s.get_ref())
    }
    pub fn min_lr(&self) -> f64 {
        self.min_lr.as_ref().map_or(0.0, |s| *s.get_ref())
    }
    pub fn cycle_steps(&self) -> u64 {
        self.cycle_steps.as_ref().map_or(0, |s| *s.get_ref())
    }
    pub fn batch_size(&self) -> usize {
        *self.batch_size.get_ref() as usize
    }
    pub fn label_noise(&self) -> f64 {
        self.label_noise.as_ref().map_or(0.0, |s| *s.get_ref())
    }
    pub fn input_noise(&self) -> f64 {
        self.input_noise.as_ref().map_or(0.0, |s| *s.get_ref())
    }
    /// Loss terms with the default (one cross-entropy term) filled in.
    pub fn loss_terms(&self) -> Vec<(LossKind, f64)> {
        if self.loss.is_empty() {
            vec![(LossKind::CrossEntropy, 1.0)]
        } else {
            self.loss.iter().map(|t| (*t.kind.get_ref(), t.weight)).collect()
        }
    }
    pub fn frozen(&self) -> Vec<String> {
        self.freeze.iter().map(|f| f.get_ref().clone()).collect()
    }
}

impl Config {
    pub fn phase_index(&self, name: &str) -> Option<usize> {
        self.phases.iter().position(|p| p.name() == name)
    }
    pub fn phase_names(&self) -> Vec<String> {
        self.phases.iter().map(|p| p.name().to_string()).collect()
    }
    pub fn max_steps(&self) -> u64 {
        *self.run.max_steps.get_ref()
    }
}
