//! SGD (momentum), Adam and AdamW written on tensors we own, because tch cannot save
//! its optimizers' state: with these, Adam's moments survive a checkpoint and resume.
//! Updates follow PyTorch's single-tensor implementations (Adam: L2 added to the
//! gradient; AdamW: decoupled decay; SGD: L2 added to the gradient, then momentum).

use crate::config::OptimizerKind;
use std::collections::HashMap;
use tch::Tensor;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hyper {
    pub lr: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

struct Slot {
    name: String,
    param: Tensor,
    /// Adam's first moment, or SGD's momentum buffer.
    m: Option<Tensor>,
    /// Adam's second moment.
    v: Option<Tensor>,
    /// Updates applied to this parameter (Adam's bias correction counts these, so a
    /// parameter unfrozen late starts its own count).
    t: i64,
}

pub struct Optimizer {
    kind: OptimizerKind,
    slots: Vec<Slot>,
}

impl Optimizer {
    pub fn new(kind: OptimizerKind, params: &[(String, Tensor)]) -> Optimizer {
        let slots = params
            .iter()
            .map(|(name, p)| Slot { name: name.clone(), param: p.shallow_clone(), m: None, v: None, t: 0 })
            .collect();
        Optimizer { kind, slots }
    }

    pub fn kind(&self) -> OptimizerKind {
        self.kind
    }

    /// Changes the algorithm. Adam ↔ AdamW keep their moments; to or from SGD the state
    /// means something else, so it is dropped. Returns whether state was dropped.
    pub fn set_kind(&mut self, kind: OptimizerKind) -> bool {
        let adam_like = |k| matches!(k, OptimizerKind::Adam | OptimizerKind::AdamW);
        let keep = self.kind == kind || (adam_like(self.kind) && adam_like(kind));
        self.kind = kind;
        if !keep {
            self.reset();
        }
        !keep
    }

    pub fn reset(&mut self) {
        for s in &mut self.slots {
            s.m = None;
            s.v = None;
            s.t = 0;
        }
    }

    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            let mut g = s.param.grad();
            if g.defined() {
                let _ = g.detach_();
                let _ = g.zero_();
            }
        }
    }

    /// One update of every parameter that has a gradient and is not frozen.
    pub fn step(&mut self, h: &Hyper, frozen: &[bool]) {
        tch::no_grad(|| {
            for (s, &is_frozen) in self.slots.iter_mut().zip(frozen) {
                let g = s.param.grad();
                if is_frozen || !g.defined() {
                    continue;
                }
                s.t += 1;
                match self.kind {
                    OptimizerKind::Sgd => sgd(s, g, h),
                    OptimizerKind::Adam => adam(s, g, h, false),
                    OptimizerKind::AdamW => adam(s, g, h, true),
                }
            }
        });
    }

    /// State tensors for a checkpoint, named `opt.{m,v,t}.<param>`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for s in &self.slots {
            if let Some(m) = &s.m {
                out.push((format!("opt.m.{}", s.name), m.shallow_clone()));
            }
            if let Some(v) = &s.v {
                out.push((format!("opt.v.{}", s.name), v.shallow_clone()));
            }
            out.push((format!("opt.t.{}", s.name), Tensor::from(s.t)));
        }
        out
    }

    /// Restores state saved by [`Optimizer::state`]. Returns the names of parameters
    /// whose state was absent (they start cold), so the caller can say so in the log.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>) -> Vec<String> {
        let mut missing = Vec::new();
        for s in &mut self.slots {
            let get =
                |kind: &str| tensors.get(&format!("opt.{kind}.{}", s.name)).map(|t| t.to_device(s.param.device()));
            match get("t") {
                Some(t) => {
                    s.t = t.int64_value(&[]);
                    s.m = get("m");
                    s.v = get("v");
                    let needs_v = matches!(self.kind, OptimizerKind::Adam | OptimizerKind::AdamW);
                    if s.t > 0 && (s.m.is_none() && self.kind != OptimizerKind::Sgd || needs_v && s.v.is_none()) {
                        missing.push(s.name.clone());
                        s.m = None;
                        s.v = None;
                        s.t = 0;
                    }
                }
                None => missing.push(s.name.clone()),
            }
        }
        missing
    }
}

fn sgd(s: &mut Slot, g: Tensor, h: &Hyper) {
    let g = if h.weight_decay != 0.0 { &g + &s.param * h.weight_decay } else { g };
    let update = if h.momentum != 0.0 {
        match &mut s.m {
            Some(buf) => {
                let _ = buf.g_mul_scalar_(h.momentum).g_add_(&g);
                buf.shallow_clone()
            }
            None => {
                let buf = g.detach().copy();
                s.m = Some(buf.shallow_clone());
                buf
            }
        }
    } else {
        g
    };
    let _ = s.param.g_sub_(&(update * h.lr));
}

fn adam(s: &mut Slot, g: Tensor, h: &Hyper, decoupled: bool) {
    let g = if decoupled {
        if h.weight_decay != 0.0 {
            let _ = s.param.g_mul_scalar_(1.0 - h.lr * h.weight_decay);
        }
        g
    } else if h.weight_decay != 0.0 {
        &g + &s.param * h.weight_decay
    } else {
        g
    };
    let m = s.m.get_or_insert_with(|| g.zeros_like());
    let _ = m.lerp_(&g, 1.0 - h.beta1);
    let v = s.v.get_or_insert_with(|| g.zeros_like());
    let _ = v.lerp_(&g.square(), 1.0 - h.beta2);
    let t = s.t as f64;
    let bias1 = 1.0 - h.beta1.powf(t);
    let bias2_sqrt = (1.0 - h.beta2.powf(t)).sqrt();
    let denom = v.sqrt().g_div_scalar_(bias2_sqrt).g_add_scalar_(h.eps);
    let _ = s.param.addcdiv_(&(&*m * (-h.lr / bias1)), &denom);
}
