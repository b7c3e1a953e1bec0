//! SGD (momentum), Adam and AdamW written on tensors we own, because tch cannot save
//! its optimizers' state: with these, Adam's moments survive a checkpoint and resume.
//! Updates follow PyTorch's single-tensor implementations (Adam: L2 added to the
//! gradient; AdamW: decoupled decay; SGD: L2 added to the gradient, then momentum).
//!
//! The parameters, their gradients and the moments each live in one flat tensor (every
//! parameter a view into it), so an update is a handful of libtorch calls over all the
//! parameters at once instead of that handful per parameter: on a ~1 ms step of a small
//! model each call costs ~5 µs, and this is PyTorch's "foreach" idea without the
//! multi-tensor kernels tch does not expose. Parameters that differ (frozen ones, or a
//! late-unfrozen one with its own Adam step count) split the update into contiguous
//! segments of equal state.

use super::kernels::{self, Rows, Sums, Update};
use crate::config::OptimizerKind;
use std::collections::HashMap;
use tch::{Device, Tensor};

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
    offset: i64,
    shape: Vec<i64>,
    /// Updates applied to this parameter (Adam's bias correction counts these, so a
    /// parameter unfrozen late starts its own count). 0 means "no state": its moments
    /// are zero, which is exactly PyTorch's initial state (and SGD's first momentum
    /// step, `0·μ + g`, is its `buf = g`).
    t: i64,
}

impl Slot {
    fn numel(&self) -> i64 {
        self.shape.iter().product()
    }
}

pub struct Optimizer {
    kind: OptimizerKind,
    params: Tensor,
    grads: Tensor,
    /// Adam's first moment, or SGD's momentum buffer.
    m: Tensor,
    /// Adam's second moment.
    v: Tensor,
    slots: Vec<Slot>,
    /// Scratch for √v between Adam's two passes; only for CPU parameters (elsewhere it
    /// would be one more model-sized buffer the libtorch update never uses).
    root: Option<Tensor>,
    /// Update CPU tensors with the fused kernel (`kernels::update`); off only in tests
    /// that compare it with the libtorch calls.
    fused: bool,
    /// Round the fused CPU update as `torch.optim` does (see `kernels::Update`); off
    /// for `init = "tch"` runs, whose numbers predate it. The libtorch calls (other
    /// devices) round as before either way.
    torch_rounding: bool,
}

impl Optimizer {
    /// PyTorch's rounding in the fused CPU update (see the field).
    pub fn set_torch_rounding(&mut self, on: bool) {
        self.torch_rounding = on;
    }

    /// `params` are views into `params_flat` in order, and each one's gradient a view
    /// into `grads_flat` at the same place (see `Trainer::new`).
    pub fn new(kind: OptimizerKind, params: &[(String, Tensor)], params_flat: &Tensor, grads_flat: &Tensor) -> Self {
        let mut offset = 0;
        let slots = params
            .iter()
            .map(|(name, p)| {
                let s = Slot { name: name.clone(), offset, shape: p.size(), t: 0 };
                offset += s.numel();
                s
            })
            .collect();
        Optimizer {
            kind,
            params: params_flat.shallow_clone(),
            grads: grads_flat.shallow_clone(),
            m: params_flat.zeros_like(),
            v: params_flat.zeros_like(),
            slots,
            root: (params_flat.device() == Device::Cpu).then(|| params_flat.zeros_like()),
            fused: true,
            torch_rounding: false,
        }
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
        tch::no_grad(|| {
            let _ = self.m.zero_();
            let _ = self.v.zero_();
        });
        self.slots.iter_mut().for_each(|s| s.t = 0);
    }

    pub fn zero_grad(&mut self) {
        let _ = self.grads.zero_();
    }

    /// One update of every parameter that is not frozen. Given the initial values (a
    /// tensor laid out like the parameters), also returns Σθ², Σ(∇θ)² and Σ(θ − θ₀)² over
    /// all parameters after the update, where the fused CPU kernel computed them in the
    /// same pass; `None` elsewhere (the caller then takes the norms itself).
    pub fn step(&mut self, h: &Hyper, frozen: &[bool], init: Option<&Tensor>) -> Option<Sums> {
        for (s, &f) in self.slots.iter_mut().zip(frozen) {
            s.t += i64::from(!f);
        }
        let segments = segments(&self.slots, frozen);
        if self.fused
            && let Some(sums) = self.step_on_host(h, &segments, init)
        {
            return sums;
        }
        let total = self.params.numel() as i64;
        tch::no_grad(|| {
            for &(start, len, t) in &segments {
                let part = |x: &Tensor| if len == total { x.shallow_clone() } else { x.narrow(0, start, len) };
                let (mut p, g, mut m, mut v) = (part(&self.params), part(&self.grads), part(&self.m), part(&self.v));
                match self.kind {
                    OptimizerKind::Sgd => sgd(&mut p, g, &mut m, h),
                    OptimizerKind::Adam => adam(&mut p, g, &mut m, &mut v, t, h, false),
                    OptimizerKind::AdamW => adam(&mut p, g, &mut m, &mut v, t, h, true),
                }
            }
        });
        None
    }

    /// The update through `kernels::update` when every tensor is a contiguous f32 CPU
    /// tensor (`None` otherwise, having changed nothing); inside, the sums when `init` is
    /// given (the frozen stretches between the segments with `kernels::sums_of_squares`).
    /// Adam takes two passes with libtorch's square root of v between them.
    fn step_on_host(&self, h: &Hyper, segments: &[(i64, i64, i64)], init: Option<&Tensor>) -> Option<Option<Sums>> {
        let root = self.root.as_ref()?;
        // SAFETY: each slice is dropped at once.
        let on_host = |t: &Tensor| unsafe { kernels::host_slice(t) }.is_some();
        if ![&self.params, &self.grads, &self.m, &self.v, root].into_iter().chain(init).all(on_host) {
            return None;
        }
        let adam = self.kind != OptimizerKind::Sgd;
        let range = |start: i64, len: i64| start as usize..(start + len) as usize;
        if adam {
            // SAFETY (here and below): the trainer's thread makes every libtorch call on
            // these tensors, and none runs while the slices live. The parameters and
            // gradients are disjoint rows of one store; the others are tensors of their own.
            let (theta, grad, m, v) = unsafe { (host(&self.params), host(&self.grads), host(&self.m), host(&self.v)) };
            for &(start, len, _) in segments {
                let r = range(start, len);
                let rows = Rows {
                    theta: &mut theta[r.clone()],
                    grad: &grad[r.clone()],
                    m: &mut m[r.clone()],
                    v: &mut v[r],
                    init: &[],
                };
                kernels::update::<false>(&self.moments(h), rows);
            }
            tch::no_grad(|| {
                for &(start, len, _) in segments {
                    let _ = self.v.narrow(0, start, len).sqrt_out(&root.narrow(0, start, len));
                }
            });
        }
        let (theta, grad, m) = unsafe { (host(&self.params), host(&self.grads), host(&self.m)) };
        let v = unsafe { host(if adam { root } else { &self.v }) };
        let init = init.map(|t| &*unsafe { host(t) });
        let mut total = [0f64; 3];
        let mut add = |sums: Sums| total.iter_mut().zip(sums).for_each(|(a, b)| *a += b);
        let mut covered = 0;
        for &(start, len, t) in segments {
            let r = range(start, len);
            if let Some(init) = init {
                let gap = covered..r.start;
                add(kernels::sums_of_squares(&theta[gap.clone()], &grad[gap.clone()], &init[gap]));
            }
            let rows = Rows {
                theta: &mut theta[r.clone()],
                grad: &grad[r.clone()],
                m: &mut m[r.clone()],
                v: &mut v[r.clone()],
                init: init.map_or(&[][..], |i| &i[r.clone()]),
            };
            let u = self.apply(h, t);
            add(if init.is_some() { kernels::update::<true>(&u, rows) } else { kernels::update::<false>(&u, rows) });
            covered = r.end;
        }
        if let Some(init) = init {
            let rest = covered..theta.len();
            add(kernels::sums_of_squares(&theta[rest.clone()], &grad[rest.clone()], &init[rest]));
        }
        Some(init.is_some().then_some(total))
    }

    /// Adam's first pass (moments, and AdamW's decay) as the kernel's f32 coefficients.
    fn moments(&self, h: &Hyper) -> Update {
        let decoupled = self.kind == OptimizerKind::AdamW;
        Update::AdamMoments {
            decay: if decoupled && h.weight_decay != 0.0 { (1.0 - h.lr * h.weight_decay) as f32 } else { 1.0 },
            wd: if decoupled { 0.0 } else { h.weight_decay as f32 },
            w1: (1.0 - h.beta1) as f32,
            w2: (1.0 - h.beta2) as f32,
            b2: h.beta2 as f32,
            torch: self.torch_rounding,
        }
    }

    /// The update (SGD's, or Adam's second pass) as the kernel's f32 coefficients, for
    /// parameters that have had `t` updates (this one included).
    fn apply(&self, h: &Hyper, t: i64) -> Update {
        match self.kind {
            OptimizerKind::Sgd => Update::Sgd {
                lr: h.lr as f32,
                wd: h.weight_decay as f32,
                momentum: h.momentum as f32,
                torch: self.torch_rounding,
            },
            OptimizerKind::Adam | OptimizerKind::AdamW => Update::AdamApply {
                bias2_sqrt: (1.0 - h.beta2.powf(t as f64)).sqrt() as f32,
                eps: h.eps as f32,
                step: (-h.lr / (1.0 - h.beta1.powf(t as f64))) as f32,
            },
        }
    }

    fn view_of(&self, flat: &Tensor, s: &Slot) -> Tensor {
        flat.narrow(0, s.offset, s.numel()).view(s.shape.as_slice())
    }

    /// State tensors for a checkpoint, named `opt.{m,v,t}.<param>`; moments only for
    /// parameters that have state.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for s in &self.slots {
            if s.t > 0 {
                out.push((format!("opt.m.{}", s.name), self.view_of(&self.m, s)));
                if self.kind != OptimizerKind::Sgd {
                    out.push((format!("opt.v.{}", s.name), self.view_of(&self.v, s)));
                }
            }
            out.push((format!("opt.t.{}", s.name), Tensor::from(s.t)));
        }
        out
    }

    /// Restores state saved by [`Optimizer::state`]. Returns the names of parameters
    /// whose state was absent (they start cold), so the caller can say so in the log.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>) -> Vec<String> {
        let mut missing = Vec::new();
        let needs_v = matches!(self.kind, OptimizerKind::Adam | OptimizerKind::AdamW);
        self.reset();
        tch::no_grad(|| {
            for i in 0..self.slots.len() {
                let s = &self.slots[i];
                let get = |kind: &str| tensors.get(&format!("opt.{kind}.{}", s.name)).filter(|t| t.size() == s.shape);
                let Some(t) = tensors.get(&format!("opt.t.{}", s.name)).map(|t| t.int64_value(&[])) else {
                    missing.push(s.name.clone());
                    continue;
                };
                let (m, v) = (get("m"), get("v"));
                // SGD without momentum keeps no buffer, so a missing one is no loss there.
                if t > 0 && (m.is_none() && self.kind != OptimizerKind::Sgd || needs_v && v.is_none()) {
                    missing.push(s.name.clone());
                    continue;
                }
                if let Some(m) = m {
                    self.view_of(&self.m, s).copy_(m);
                }
                if let Some(v) = v {
                    self.view_of(&self.v, s).copy_(v);
                }
                self.slots[i].t = t;
            }
        });
        missing
    }
}

/// A checked tensor's elements (see `Optimizer::step_on_host`).
///
/// # Safety
/// As `kernels::host_slice`.
#[allow(clippy::mut_from_ref)]
unsafe fn host(t: &Tensor) -> &mut [f32] {
    unsafe { kernels::host_slice(t) }.expect("checked: a contiguous f32 CPU tensor")
}

/// Maximal runs of adjacent, unfrozen parameters with the same step count, as
/// (offset, length, step count) in the flat layout: usually one run covering everything.
fn segments(slots: &[Slot], frozen: &[bool]) -> Vec<(i64, i64, i64)> {
    let mut out: Vec<(i64, i64, i64)> = Vec::new();
    for (s, &f) in slots.iter().zip(frozen) {
        if f {
            continue;
        }
        match out.last_mut() {
            Some((start, len, t)) if *t == s.t && *start + *len == s.offset => *len += s.numel(),
            _ => out.push((s.offset, s.numel(), s.t)),
        }
    }
    out
}

fn sgd(p: &mut Tensor, g: Tensor, buf: &mut Tensor, h: &Hyper) {
    let g = if h.weight_decay != 0.0 { &g + &*p * h.weight_decay } else { g };
    let update = if h.momentum != 0.0 {
        let _ = buf.g_mul_scalar_(h.momentum).g_add_(&g);
        buf.shallow_clone()
    } else {
        g
    };
    let _ = p.g_sub_(&(update * h.lr));
}

fn adam(p: &mut Tensor, g: Tensor, m: &mut Tensor, v: &mut Tensor, t: i64, h: &Hyper, decoupled: bool) {
    let g = if decoupled {
        if h.weight_decay != 0.0 {
            let _ = p.g_mul_scalar_(1.0 - h.lr * h.weight_decay);
        }
        g
    } else if h.weight_decay != 0.0 {
        &g + &*p * h.weight_decay
    } else {
        g
    };
    let _ = m.lerp_(&g, 1.0 - h.beta1);
    let _ = v.lerp_(&g.square(), 1.0 - h.beta2);
    let t = t as f64;
    let bias1 = 1.0 - h.beta1.powf(t);
    let bias2_sqrt = (1.0 - h.beta2.powf(t)).sqrt();
    let denom = v.sqrt().g_div_scalar_(bias2_sqrt).g_add_scalar_(h.eps);
    let _ = p.addcdiv_(&(&*m * (-h.lr / bias1)), &denom);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(offset: i64, n: i64, t: i64) -> Slot {
        Slot { name: String::new(), offset, shape: vec![n], t }
    }

    #[test]
    fn segments_merge_equal_neighbours_and_skip_frozen() {
        let slots = [slot(0, 4, 3), slot(4, 2, 3), slot(6, 5, 1), slot(11, 1, 1), slot(12, 3, 1)];
        assert_eq!(segments(&slots, &[false; 5]), vec![(0, 6, 3), (6, 9, 1)]);
        // A frozen parameter in the middle splits a run even when the counts agree.
        assert_eq!(segments(&slots, &[false, false, false, true, false]), vec![(0, 6, 3), (6, 5, 1), (12, 3, 1)]);
        assert_eq!(segments(&slots, &[true; 5]), vec![]);
    }

    /// AdamW on one scalar, written out in f64 from the paper's update (with PyTorch's
    /// decoupled decay), as an independent reference.
    struct ScalarAdamW {
        p: f64,
        m: f64,
        v: f64,
        t: i32,
    }

    impl ScalarAdamW {
        fn step(&mut self, g: f64, h: &Hyper) {
            self.t += 1;
            self.p *= 1.0 - h.lr * h.weight_decay;
            self.m = h.beta1 * self.m + (1.0 - h.beta1) * g;
            self.v = h.beta2 * self.v + (1.0 - h.beta2) * g * g;
            let m_hat = self.m / (1.0 - h.beta1.powi(self.t));
            let v_hat = self.v / (1.0 - h.beta2.powi(self.t));
            self.p -= h.lr * m_hat / (v_hat.sqrt() + h.eps);
        }
    }

    #[test]
    fn flat_adamw_matches_a_scalar_reference_with_freezing_and_late_start() {
        let h = Hyper { lr: 0.1, weight_decay: 0.01, momentum: 0.0, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
        let start = [0.5f32, -1.0, 2.0, 0.25, -0.75];
        let params_flat = Tensor::from_slice(&start);
        let mut grads_flat = params_flat.zeros_like();
        // Two parameters: "a" (3 values) and "b" (2 values), views of the flat tensors.
        let named = [("a".to_string(), params_flat.narrow(0, 0, 3)), ("b".to_string(), params_flat.narrow(0, 3, 2))];
        let mut opt = Optimizer::new(OptimizerKind::AdamW, &named, &params_flat, &grads_flat);
        let mut reference: Vec<ScalarAdamW> =
            start.iter().map(|&p| ScalarAdamW { p: p as f64, m: 0.0, v: 0.0, t: 0 }).collect();
        for step in 0..8 {
            // "b" is frozen for the first three steps, so it starts its own count later.
            let frozen = [false, step < 3];
            let g: Vec<f32> = (0..5).map(|i| ((step * 5 + i) as f32 * 0.7).sin()).collect();
            grads_flat.copy_(&Tensor::from_slice(&g));
            opt.step(&h, &frozen, None);
            for (i, r) in reference.iter_mut().enumerate() {
                if !(i >= 3 && frozen[1]) {
                    r.step(g[i] as f64, &h);
                }
            }
            let got = Vec::<f32>::try_from(&params_flat).unwrap();
            for (i, (g, r)) in got.iter().zip(&reference).enumerate() {
                assert!((*g as f64 - r.p).abs() < 1e-5, "step {step}, value {i}: {g} vs {}", r.p);
            }
        }
        assert_eq!(opt.slots.iter().map(|s| s.t).collect::<Vec<_>>(), [8, 5]);
        // The state round-trips through a checkpoint's tensors.
        let saved: HashMap<String, Tensor> = opt.state().into_iter().map(|(k, v)| (k, v.copy())).collect();
        let mut other = Optimizer::new(OptimizerKind::AdamW, &named, &params_flat, &grads_flat);
        assert!(other.load_state(&saved).is_empty());
        assert_eq!(other.slots.iter().map(|s| s.t).collect::<Vec<_>>(), [8, 5]);
        assert!(other.m.equal(&opt.m) && other.v.equal(&opt.v));
    }

    /// The fused CPU kernel against the libtorch calls, equal bit for bit, for every optimizer, on sizes that
    /// take both the vector loop and its tail, with a frozen parameter in the middle that
    /// thaws halfway (its own step count), and its sums against a double-precision sum.
    #[test]
    fn fused_update_matches_the_libtorch_calls_and_takes_the_norms() {
        let hypers = [
            (
                OptimizerKind::Sgd,
                Hyper { lr: 0.05, weight_decay: 0.01, momentum: 0.9, beta1: 0.9, beta2: 0.999, eps: 1e-8 },
            ),
            (
                OptimizerKind::Sgd,
                Hyper { lr: 0.05, weight_decay: 0.0, momentum: 0.0, beta1: 0.9, beta2: 0.999, eps: 1e-8 },
            ),
            (
                OptimizerKind::Adam,
                Hyper { lr: 0.01, weight_decay: 0.1, momentum: 0.0, beta1: 0.9, beta2: 0.999, eps: 1e-8 },
            ),
            (
                OptimizerKind::AdamW,
                Hyper { lr: 0.01, weight_decay: 0.5, momentum: 0.0, beta1: 0.8, beta2: 0.99, eps: 1e-6 },
            ),
        ];
        let sizes = [1500i64, 37, 1030];
        let n: i64 = sizes.iter().sum();
        let start: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0).collect();
        let init = Tensor::from_slice(&start).g_add_scalar(0.125);
        for (kind, h) in hypers {
            let build = || {
                let params = Tensor::from_slice(&start);
                let grads = params.zeros_like();
                let mut offset = 0;
                let named: Vec<(String, Tensor)> = sizes
                    .iter()
                    .enumerate()
                    .map(|(k, &len)| {
                        offset += len;
                        (format!("p{k}"), params.narrow(0, offset - len, len))
                    })
                    .collect();
                let opt = Optimizer::new(kind, &named, &params, &grads);
                (params, grads, opt)
            };
            let (fused_p, fused_g, mut fused) = build();
            let (plain_p, plain_g, mut plain) = build();
            plain.fused = false;
            for step in 0..6 {
                let frozen = [false, step < 3, false];
                let g: Vec<f32> = (0..n).map(|i| ((step * n + i) as f32 * 0.37).sin() * 0.5).collect();
                for mut grads in [fused_g.shallow_clone(), plain_g.shallow_clone()] {
                    grads.copy_(&Tensor::from_slice(&g));
                }
                let sums = fused.step(&h, &frozen, Some(&init)).expect("CPU tensors take the fused path");
                assert!(plain.step(&h, &frozen, Some(&init)).is_none());
                // Bit for bit: the same operations in the same order (libtorch's lerp is a
                // fused multiply-add; its square root is taken by libtorch).
                let close = |a: &Tensor, b: &Tensor, what: &str| {
                    let worst = (a - b).abs().max().double_value(&[]);
                    assert!(worst == 0.0, "{kind:?} step {step}: {what} differs by {worst}");
                };
                close(&fused.m, &plain.m, "m");
                close(&fused.v, &plain.v, "v");
                close(&fused_p, &plain_p, "θ");
                let f64s = |t: &Tensor| t.to_kind(tch::Kind::Double);
                let want = [
                    f64s(&fused_p).square().sum(tch::Kind::Double).double_value(&[]),
                    f64s(&fused_g).square().sum(tch::Kind::Double).double_value(&[]),
                    (f64s(&fused_p) - f64s(&init)).square().sum(tch::Kind::Double).double_value(&[]),
                ];
                for k in 0..3 {
                    assert!(
                        (sums[k] - want[k]).abs() <= 1e-6 * want[k],
                        "{kind:?} step {step} sum {k}: {} vs {}",
                        sums[k],
                        want[k]
                    );
                }
            }
        }
    }
}
