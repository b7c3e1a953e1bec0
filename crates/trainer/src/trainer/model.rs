//! Models with named layers. `forward` can also hand back each named layer's output
//! (tch has no forward hooks), which is what probes read.

use super::data::Inputs;
use crate::config::{Activation, InitKind, ModelKind, ModelSection, PoolKind};
use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

/// A named layer's output captured during a forward pass.
pub struct Feature {
    pub layer: String,
    /// (n × d) features; for attention layers, the attention probabilities
    /// (n × heads × q × k).
    pub value: Tensor,
    pub is_attention: bool,
}

pub enum Model {
    Mlp(Mlp),
    Transformer(Transformer),
    Cnn(Cnn),
    Script(super::script::ScriptModel),
}

impl Model {
    /// A built-in model (a TorchScript module is loaded by `script::ScriptModel::load`).
    /// `sample_shape` is one input's shape (a cnn's `[C, H, W]`).
    pub fn new(vs: &nn::Path, cfg: &ModelSection, inputs: Inputs, sample_shape: &[i64], classes: usize) -> Model {
        match (cfg.kind.get_ref(), inputs) {
            (ModelKind::Cnn, _) => Model::Cnn(Cnn::new(vs, cfg, sample_shape, classes)),
            (ModelKind::Transformer, Inputs::Tokens { vocab, seq_len }) => {
                Model::Transformer(Transformer::new(vs, cfg, vocab, seq_len, classes))
            }
            (_, Inputs::Features { dim }) => Model::Mlp(Mlp::new(vs, cfg, Input::Features(dim), classes)),
            (_, Inputs::Tokens { vocab, seq_len }) => {
                Model::Mlp(Mlp::new(vs, cfg, Input::Tokens { vocab, seq_len }, classes))
            }
        }
    }

    /// Logits, and each named layer's output when `capture` is set. `train`: training
    /// mode (batch norm normalises by the batch and updates its running statistics) or
    /// evaluation mode (it uses them); the MLP and transformer behave the same in both.
    pub fn forward(&self, x: &Tensor, capture: bool, train: bool) -> (Tensor, Vec<Feature>) {
        let mut feats = Vec::new();
        let logits = match self {
            Model::Mlp(m) => m.forward(x, capture.then_some(&mut feats)),
            Model::Transformer(t) => t.forward(x, capture.then_some(&mut feats)),
            Model::Cnn(c) => c.forward(x, capture.then_some(&mut feats), train),
            Model::Script(s) => return s.forward(x, capture, train),
        };
        (logits, feats)
    }
}

/// Weight and bias initialisers of a layer with these fans under `init` (None: tch's own
/// defaults, `init = "tch"`); see [`init_linear`].
fn initialisers(init: InitKind, fan_in: i64, fan_out: i64) -> Option<(nn::Init, nn::Init)> {
    let f = fan_in as f64;
    let bound = 1.0 / f.sqrt();
    let zero = nn::Init::Const(0.0);
    Some(match init {
        InitKind::Tch => return None,
        InitKind::Torch => (nn::Init::Uniform { lo: -bound, up: bound }, nn::Init::Uniform { lo: -bound, up: bound }),
        InitKind::Kaiming => (nn::Init::Randn { mean: 0.0, stdev: (2.0 / f).sqrt() }, zero),
        InitKind::Xavier => {
            let b = (6.0 / (f + fan_out as f64)).sqrt();
            (nn::Init::Uniform { lo: -b, up: b }, zero)
        }
        InitKind::Normal => (nn::Init::Randn { mean: 0.0, stdev: 0.02 }, zero),
    })
}

/// A small convolutional network for image-shaped inputs `[n, C, H, W]`: per entry of
/// `channels` a block conv 3×3 (padding 1) → batch norm (optional) → ReLU → 2×2 pooling
/// (while the image is at least 2 × 2), then a linear head on the flattened features.
/// Layers: `conv.0` … (each block's output), `head`. Batch norm's running statistics
/// are buffers (not trained, checkpointed); `forward`'s `train` picks its mode.
pub struct Cnn {
    blocks: Vec<ConvBlock>,
    head: nn::Linear,
}

struct ConvBlock {
    conv: nn::Conv2D,
    bn: Option<nn::BatchNorm>,
    pool: PoolKind,
}

impl Cnn {
    fn new(vs: &nn::Path, cfg: &ModelSection, sample_shape: &[i64], classes: usize) -> Cnn {
        let (mut c, mut h, mut w) = match *sample_shape {
            [c, h, w] => (c, h, w),
            _ => panic!("a cnn reads [C, H, W] samples, got {sample_shape:?} (checked by the data)"),
        };
        let init = cfg.init();
        let mut blocks = Vec::new();
        for (i, &out) in cfg.cnn_channels().iter().enumerate() {
            let out = out as i64;
            let path = vs / "conv" / i;
            let mut conv_cfg = nn::ConvConfig { padding: 1, ..Default::default() };
            if let Some((ws, bs)) = initialisers(init, c * 9, out * 9) {
                (conv_cfg.ws_init, conv_cfg.bs_init) = (ws, bs);
            }
            let conv = nn::conv2d(&path, c, out, 3, conv_cfg);
            let bn = cfg.cnn_batch_norm().then(|| {
                // PyTorch's BatchNorm2d: weight 1, bias 0 (tch's default weight is U(0, 1)).
                let bn_cfg = nn::BatchNormConfig { ws_init: nn::Init::Const(1.0), ..Default::default() };
                nn::batch_norm2d(&path / "bn", out, bn_cfg)
            });
            let pool = if h >= 2 && w >= 2 { cfg.cnn_pool() } else { PoolKind::None };
            if pool != PoolKind::None {
                (h, w) = (h / 2, w / 2);
            }
            blocks.push(ConvBlock { conv, bn, pool });
            c = out;
        }
        let head = init_linear(&(vs / "head"), c * h * w, classes as i64, init);
        Cnn { blocks, head }
    }

    fn forward(&self, x: &Tensor, mut capture: Option<&mut Vec<Feature>>, train: bool) -> Tensor {
        let mut h = x.shallow_clone();
        for (i, b) in self.blocks.iter().enumerate() {
            h = b.conv.forward(&h);
            if let Some(bn) = &b.bn {
                h = bn.forward_t(&h, train);
            }
            h = h.relu();
            h = match b.pool {
                PoolKind::Max => h.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false),
                PoolKind::Avg => h.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>),
                PoolKind::None => h,
            };
            if let Some(f) = capture.as_deref_mut() {
                f.push(Feature { layer: format!("conv.{i}"), value: h.shallow_clone(), is_attention: false });
            }
        }
        let out = linear(&self.head, &h.flatten(1, -1));
        if let Some(f) = capture {
            f.push(Feature { layer: "head".into(), value: out.shallow_clone(), is_attention: false });
        }
        out
    }
}

/// A linear layer initialised by `init`:
/// - `tch`: tch's defaults (weights kaiming-uniform with the ReLU gain, U(±√(6/fan_in)),
///   which is √6 × PyTorch's; biases U(±1/√fan_in)) — phasetop before `init` existed;
/// - `torch`: exactly `nn.Linear`'s `reset_parameters` (kaiming-uniform with a = √5, i.e.
///   weights U(±1/√fan_in), biases U(±1/√fan_in));
/// - `kaiming`: weights N(0, 2/fan_in) (He normal), biases 0;
/// - `xavier`: weights U(±√(6/(fan_in + fan_out))) (Glorot uniform), biases 0;
/// - `normal`: weights N(0, 0.02²), biases 0.
pub fn init_linear(vs: &nn::Path, fan_in: i64, fan_out: i64, init: InitKind) -> nn::Linear {
    match initialisers(init, fan_in, fan_out) {
        None => nn::linear(vs, fan_in, fan_out, Default::default()),
        Some((ws_init, bs_init)) => {
            nn::linear(vs, fan_in, fan_out, nn::LinearConfig { ws_init, bs_init: Some(bs_init), bias: true })
        }
    }
}

/// An embedding table: N(0, 1) as `nn.Embedding` (and tch) do, N(0, 0.02²) under `normal`.
pub fn init_embedding(vs: &nn::Path, vocab: i64, dim: i64, init: InitKind) -> nn::Embedding {
    let ws_init = match init {
        InitKind::Normal => nn::Init::Randn { mean: 0.0, stdev: 0.02 },
        _ => nn::Init::Randn { mean: 0.0, stdev: 1.0 },
    };
    nn::embedding(vs, vocab, dim, nn::EmbeddingConfig { ws_init, ..Default::default() })
}

/// `x Wᵀ + b` as one fused op (addmm), as PyTorch's `nn.Linear` does; tch's
/// `Linear::forward` spells it matmul + transpose + add, which costs more per step.
fn linear(l: &nn::Linear, x: &Tensor) -> Tensor {
    x.linear(&l.ws, l.bs.as_ref())
}

fn activate(a: Activation, x: Tensor) -> Tensor {
    match a {
        Activation::Relu => x.relu(),
        Activation::Gelu => x.gelu("none"),
        Activation::Tanh => x.tanh(),
        Activation::Sigmoid => x.sigmoid(),
        Activation::Linear => x,
    }
}

/// What an MLP reads: features, or token ids it embeds (`[model] embed`).
enum Input {
    Features(usize),
    Tokens { vocab: usize, seq_len: usize },
}

/// An MLP's token embedding: one table shared by every position, or one per position;
/// the positions' vectors are concatenated.
struct TokenEmbedding {
    tables: Vec<nn::Embedding>,
}

pub struct Mlp {
    embed: Option<TokenEmbedding>,
    hidden: Vec<nn::Linear>,
    head: nn::Linear,
    activation: Activation,
}

impl Mlp {
    fn new(vs: &nn::Path, cfg: &ModelSection, input: Input, classes: usize) -> Mlp {
        let init = cfg.init();
        let width = cfg.mlp_width() as i64;
        let (embed, input_dim) = match input {
            Input::Features(dim) => (None, dim as i64),
            Input::Tokens { vocab, seq_len } => {
                let n = cfg.embed().expect("validated: an mlp reads tokens only with embed") as i64;
                let tables = if cfg.embed_shared() {
                    vec![init_embedding(&(vs / "embed" / "tok"), vocab as i64, n, init)]
                } else {
                    (0..seq_len)
                        .map(|i| init_embedding(&(vs / "embed" / format!("tok{i}")), vocab as i64, n, init))
                        .collect()
                };
                (Some(TokenEmbedding { tables }), seq_len as i64 * n)
            }
        };
        let mut hidden = Vec::new();
        let mut d = input_dim;
        for i in 0..cfg.mlp_depth() {
            hidden.push(init_linear(&(vs / "mlp" / i), d, width, init));
            d = width;
        }
        let head = init_linear(&(vs / "head"), d, classes as i64, init);
        Mlp { embed, hidden, head, activation: cfg.activation() }
    }

    fn forward(&self, x: &Tensor, mut capture: Option<&mut Vec<Feature>>) -> Tensor {
        let mut h = match &self.embed {
            None => x.shallow_clone(),
            Some(e) => {
                let t = x.size()[1];
                let parts: Vec<Tensor> = if e.tables.len() == 1 {
                    vec![e.tables[0].forward(x).flatten(1, -1)]
                } else {
                    (0..t).map(|i| e.tables[i as usize].forward(&x.select(1, i))).collect()
                };
                let h = if parts.len() == 1 { parts.into_iter().next().unwrap() } else { Tensor::cat(&parts, 1) };
                if let Some(f) = capture.as_deref_mut() {
                    f.push(Feature { layer: "embed".into(), value: h.shallow_clone(), is_attention: false });
                }
                h
            }
        };
        for (i, layer) in self.hidden.iter().enumerate() {
            h = activate(self.activation, linear(layer, &h));
            if let Some(f) = capture.as_deref_mut() {
                f.push(Feature { layer: format!("mlp.{i}"), value: h.shallow_clone(), is_attention: false });
            }
        }
        let out = linear(&self.head, &h);
        if let Some(f) = capture {
            f.push(Feature { layer: "head".into(), value: out.shallow_clone(), is_attention: false });
        }
        out
    }
}

/// A small pre-norm transformer over short token sequences; the prediction is read
/// from the last position (the `=` token for modular arithmetic).
pub struct Transformer {
    tok: nn::Embedding,
    pos: Option<Tensor>,
    blocks: Vec<Block>,
    ln_f: nn::LayerNorm,
    head: nn::Linear,
}

struct Block {
    ln1: nn::LayerNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    ln2: nn::LayerNorm,
    fc: nn::Linear,
    out: nn::Linear,
    heads: i64,
}

impl Transformer {
    fn new(vs: &nn::Path, cfg: &ModelSection, vocab: usize, seq_len: usize, classes: usize) -> Transformer {
        let d = cfg.transformer_d_model() as i64;
        let init = cfg.init();
        let embed = vs / "embed";
        let tok = init_embedding(&(&embed / "tok"), vocab as i64, d, init);
        let pos = cfg
            .positional()
            .then(|| embed.var("pos", &[seq_len as i64, d], nn::Init::Randn { mean: 0.0, stdev: 0.02 }));
        let ff = cfg.transformer_d_ff() as i64;
        let blocks = (0..cfg.transformer_layers())
            .map(|i| {
                let attn = vs / "block" / i / "attn";
                let mlp = vs / "block" / i / "mlp";
                Block {
                    ln1: nn::layer_norm(&attn / "ln", vec![d], Default::default()),
                    qkv: init_linear(&(&attn / "qkv"), d, 3 * d, init),
                    proj: init_linear(&(&attn / "proj"), d, d, init),
                    ln2: nn::layer_norm(&mlp / "ln", vec![d], Default::default()),
                    fc: init_linear(&(&mlp / "fc"), d, ff, init),
                    out: init_linear(&(&mlp / "out"), ff, d, init),
                    heads: cfg.transformer_heads() as i64,
                }
            })
            .collect();
        let ln_f = nn::layer_norm(vs / "head" / "ln", vec![d], Default::default());
        let head = init_linear(&(vs / "head" / "out"), d, classes as i64, init);
        Transformer { tok, pos, blocks, ln_f, head }
    }

    fn forward(&self, x: &Tensor, mut capture: Option<&mut Vec<Feature>>) -> Tensor {
        let mut h = self.tok.forward(x);
        if let Some(pos) = &self.pos {
            h = h + pos;
        }
        if let Some(f) = capture.as_deref_mut() {
            // All positions, flattened per sample by the probes: the last position alone is
            // the constant "=" token.
            f.push(Feature { layer: "embed".into(), value: h.shallow_clone(), is_attention: false });
        }
        for (i, b) in self.blocks.iter().enumerate() {
            let (attn_out, probs) = b.attention(&b.ln1.forward(&h));
            h = h + attn_out;
            if let Some(f) = capture.as_deref_mut() {
                f.push(Feature { layer: format!("block.{i}.attn"), value: probs, is_attention: true });
            }
            h = &h + linear(&b.out, &linear(&b.fc, &b.ln2.forward(&h)).gelu("none"));
            if let Some(f) = capture.as_deref_mut() {
                f.push(Feature { layer: format!("block.{i}.mlp"), value: last_position(&h), is_attention: false });
            }
        }
        let out = linear(&self.head, &self.ln_f.forward(&last_position(&h)));
        if let Some(f) = capture {
            f.push(Feature { layer: "head".into(), value: out.shallow_clone(), is_attention: false });
        }
        out
    }
}

fn last_position(h: &Tensor) -> Tensor {
    let t = h.size()[1];
    h.select(1, t - 1)
}

impl Block {
    /// Multi-head self-attention (no mask: every position sees the whole short input).
    fn attention(&self, x: &Tensor) -> (Tensor, Tensor) {
        let (b, t, d) = x.size3().expect("batch × time × dim");
        let dh = d / self.heads;
        let qkv = linear(&self.qkv, x).view([b, t, 3, self.heads, dh]).permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let scores = q.matmul(&k.transpose(-2, -1)) / (dh as f64).sqrt();
        let probs = scores.softmax(-1, Kind::Float);
        let out = probs.matmul(&v).transpose(1, 2).contiguous().view([b, t, d]);
        (linear(&self.proj, &out), probs)
    }
}
