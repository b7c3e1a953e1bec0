//! One-pass CPU kernels over the flat parameter store: the optimizer updates, and the
//! per-step ‖θ‖, ‖∇θ‖ and ‖θ − θ₀‖ computed in the same pass.
//!
//! Written on tensors, an AdamW update is ~10 libtorch calls, each a pass over every
//! parameter with a freshly allocated temporary, and the norms are three more passes.
//! On a ~1 ms step of a small model those passes were a large part of the step and the
//! norms ~6 % of the run (docs/PERFORMANCE.md). Here an update reads θ, ∇θ, the moments
//! (and θ₀ for the norms) once and writes θ and the moments once. On other devices the
//! optimizer keeps its libtorch calls (`optim.rs`).
//!
//! Arithmetic is f32 element by element, as libtorch's kernels do; the norms' partial
//! sums are f32 over blocks of `BLOCK` elements folded into f64, so their rounding error
//! does not grow with the model size.

use tch::{Device, Kind, Tensor};

/// Elements per f32 partial sum before it is folded into f64.
const BLOCK: usize = 1024;
/// Independent accumulators per sum (a multiple of the vector width): no loop-carried
/// dependency on one scalar, so the loops vectorise.
const LANES: usize = 16;

/// Σθ², Σ(∇θ)², Σ(θ − θ₀)² of a range.
pub type Sums = [f64; 3];

pub fn add_sums(a: Sums, b: Sums) -> Sums {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

/// The optimizer's update of one element: (θ, ∇θ, m, v) → new θ, updating m and v.
/// Constants are f32, as libtorch casts a scalar for an f32 tensor.
#[derive(Clone, Copy, Debug)]
pub enum Update {
    /// θ ← θ − lr·b, with g' = g + wd·θ and b = μ·b + g' (b = g' without momentum).
    Sgd { lr: f32, weight_decay: f32, momentum: f32 },
    /// Adam (L2 added to the gradient) or AdamW (θ scaled by `decay` first):
    /// m ← m + (1−β₁)(g − m), v ← v + (1−β₂)(g² − v),
    /// θ ← θ − step·m / (√v / bias2_sqrt + ε).
    Adam { decay: f32, l2: f32, w1: f32, w2: f32, step: f32, bias2_sqrt: f32, eps: f32 },
}

/// Host views of one contiguous range of the store and of the optimizer's moments.
pub struct Rows<'a> {
    pub theta: &'a mut [f32],
    pub grad: &'a [f32],
    pub m: &'a mut [f32],
    pub v: &'a mut [f32],
    pub init: &'a [f32],
}

/// Applies `update` to every element of `rows`; with `stats`, also returns the sums of
/// squares of the updated θ, of ∇θ and of θ − θ₀ (zeros without).
pub fn update(rows: Rows<'_>, update: Update, stats: bool) -> Sums {
    let n = rows.theta.len();
    assert!([rows.grad.len(), rows.m.len(), rows.v.len(), rows.init.len()].iter().all(|&l| l == n));
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { update_avx2(rows, update, stats) };
    }
    update_portable(rows, update, stats)
}

/// Σθ², Σ(∇θ)², Σ(θ − θ₀)² over three equally long rows, without changing them.
pub fn sums_of_squares(theta: &[f32], grad: &[f32], init: &[f32]) -> Sums {
    assert!(theta.len() == grad.len() && grad.len() == init.len(), "rows of one store");
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: as above.
        return unsafe { sums_avx2(theta, grad, init) };
    }
    sums_portable(theta, grad, init)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn update_avx2(rows: Rows<'_>, update: Update, stats: bool) -> Sums {
    update_portable(rows, update, stats)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sums_avx2(theta: &[f32], grad: &[f32], init: &[f32]) -> Sums {
    sums_portable(theta, grad, init)
}

#[inline(always)]
fn update_portable(rows: Rows<'_>, update: Update, stats: bool) -> Sums {
    // One monomorphised loop per rule, so that the match is outside the element loop.
    match update {
        Update::Sgd { lr, weight_decay, momentum } => {
            if momentum != 0.0 {
                apply(rows, stats, |p, g, b, _| {
                    *b = momentum * *b + (g + weight_decay * p);
                    p - lr * *b
                })
            } else {
                apply(rows, stats, |p, g, _, _| p - lr * (g + weight_decay * p))
            }
        }
        Update::Adam { decay, l2, w1, w2, step, bias2_sqrt, eps } => apply(rows, stats, |p, g, m, v| {
            let p = p * decay;
            let g = g + l2 * p;
            *m += w1 * (g - *m);
            *v += w2 * (g * g - *v);
            p - step * *m / (v.sqrt() / bias2_sqrt + eps)
        }),
    }
}

/// Runs `f` over the rows in blocks, accumulating the sums when asked.
#[inline(always)]
fn apply(rows: Rows<'_>, stats: bool, f: impl Fn(f32, f32, &mut f32, &mut f32) -> f32) -> Sums {
    let mut total = [0f64; 3];
    let blocks = rows
        .theta
        .chunks_mut(BLOCK)
        .zip(rows.grad.chunks(BLOCK))
        .zip(rows.m.chunks_mut(BLOCK))
        .zip(rows.v.chunks_mut(BLOCK))
        .zip(rows.init.chunks(BLOCK));
    for ((((theta, grad), m), v), init) in blocks {
        let mut acc = [[0f32; LANES]; 3];
        let lanes = theta
            .chunks_mut(LANES)
            .zip(grad.chunks(LANES))
            .zip(m.chunks_mut(LANES))
            .zip(v.chunks_mut(LANES))
            .zip(init.chunks(LANES));
        for ((((theta, grad), m), v), init) in lanes {
            if theta.len() == LANES {
                for l in 0..LANES {
                    let p = f(theta[l], grad[l], &mut m[l], &mut v[l]);
                    theta[l] = p;
                    if stats {
                        let d = p - init[l];
                        acc[0][l] += p * p;
                        acc[1][l] += grad[l] * grad[l];
                        acc[2][l] += d * d;
                    }
                }
            } else {
                for l in 0..theta.len() {
                    let p = f(theta[l], grad[l], &mut m[l], &mut v[l]);
                    theta[l] = p;
                    if stats {
                        let d = p - init[l];
                        acc[0][l] += p * p;
                        acc[1][l] += grad[l] * grad[l];
                        acc[2][l] += d * d;
                    }
                }
            }
        }
        fold(&mut total, &acc);
    }
    total
}

#[inline(always)]
fn sums_portable(theta: &[f32], grad: &[f32], init: &[f32]) -> Sums {
    let mut total = [0f64; 3];
    for ((t, g), i) in theta.chunks(BLOCK).zip(grad.chunks(BLOCK)).zip(init.chunks(BLOCK)) {
        let mut acc = [[0f32; LANES]; 3];
        for ((t, g), i) in t.chunks(LANES).zip(g.chunks(LANES)).zip(i.chunks(LANES)) {
            if t.len() == LANES {
                for l in 0..LANES {
                    let d = t[l] - i[l];
                    acc[0][l] += t[l] * t[l];
                    acc[1][l] += g[l] * g[l];
                    acc[2][l] += d * d;
                }
            } else {
                for l in 0..t.len() {
                    let d = t[l] - i[l];
                    acc[0][l] += t[l] * t[l];
                    acc[1][l] += g[l] * g[l];
                    acc[2][l] += d * d;
                }
            }
        }
        fold(&mut total, &acc);
    }
    total
}

#[inline(always)]
fn fold(total: &mut Sums, acc: &[[f32; LANES]; 3]) {
    for (sum, lanes) in total.iter_mut().zip(acc) {
        *sum += lanes.iter().map(|&x| f64::from(x)).sum::<f64>();
    }
}

/// A contiguous f32 CPU tensor's elements as a host slice; `None` for any other device,
/// kind or layout (callers then use libtorch calls).
///
/// # Safety
/// The caller must not let libtorch read or write the tensor while the slice lives,
/// nor hold two slices of overlapping memory of which one is mutable. The trainer owns
/// these tensors and makes every libtorch call on them from its own thread, so between
/// two of its calls nothing else touches them.
pub unsafe fn host_slice<'a>(t: &'a Tensor) -> Option<&'a mut [f32]> {
    if t.device() != Device::Cpu || t.kind() != Kind::Float || !t.is_contiguous() {
        return None;
    }
    let n = t.numel();
    if n == 0 {
        return Some(&mut []);
    }
    // SAFETY: a contiguous f32 CPU tensor of n elements starts at its data pointer; the
    // caller upholds the aliasing rules above.
    Some(unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(theta: &[f32], grad: &[f32], init: &[f32]) -> [f64; 3] {
        let sq = |it: &mut dyn Iterator<Item = f64>| it.map(|x| x * x).sum::<f64>();
        [
            sq(&mut theta.iter().map(|&x| f64::from(x))),
            sq(&mut grad.iter().map(|&x| f64::from(x))),
            sq(&mut theta.iter().zip(init).map(|(&a, &b)| f64::from(a - b))),
        ]
    }

    fn rows(n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let theta: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let grad: Vec<f32> = (0..n).map(|i| ((i * 104_729) % 997) as f32 * 1e-4 - 0.05).collect();
        let init: Vec<f32> = theta.iter().enumerate().map(|(i, t)| t + (i % 13) as f32 * 1e-3).collect();
        (theta, grad, init)
    }

    fn close(got: Sums, want: Sums, what: &str) {
        for k in 0..3 {
            let err = (got[k] - want[k]).abs();
            assert!(err <= 1e-6 * want[k].abs().max(1e-30), "{what} k={k}: {} vs {}", got[k], want[k]);
        }
    }

    #[test]
    fn sums_match_a_double_precision_sum_for_every_length() {
        for n in [0usize, 1, 15, 16, 17, 1023, 1024, 1025, 38_000, 100_003] {
            let (theta, grad, init) = rows(n);
            let got = sums_of_squares(&theta, &grad, &init);
            close(got, naive(&theta, &grad, &init), &format!("n={n}"));
            assert_eq!(sums_portable(&theta, &grad, &init), got, "same order of sums on every CPU");
        }
    }

    /// Each rule, element by element in f64 from its textbook form, against the kernel,
    /// over lengths that exercise the blocks' and lanes' remainders.
    #[test]
    fn updates_match_the_textbook_rules_and_report_the_updated_norms() {
        let rules = [
            Update::Sgd { lr: 0.1, weight_decay: 0.0, momentum: 0.0 },
            Update::Sgd { lr: 0.05, weight_decay: 0.01, momentum: 0.9 },
            Update::Adam { decay: 1.0, l2: 0.01, w1: 0.1, w2: 0.001, step: 0.01, bias2_sqrt: 0.3, eps: 1e-8 },
            Update::Adam { decay: 0.999, l2: 0.0, w1: 0.1, w2: 0.001, step: 0.02, bias2_sqrt: 0.5, eps: 1e-8 },
        ];
        for rule in rules {
            for n in [1usize, 17, 1025, 5000] {
                let (theta0, grad, init) = rows(n);
                let m0: Vec<f32> = grad.iter().map(|g| g * 0.5).collect();
                let v0: Vec<f32> = grad.iter().map(|g| g * g * 2.0).collect();
                let (mut theta, mut m, mut v) = (theta0.clone(), m0.clone(), v0.clone());
                let sums =
                    update(Rows { theta: &mut theta, grad: &grad, m: &mut m, v: &mut v, init: &init }, rule, true);
                for i in 0..n {
                    let (p, g, mm, vv) = (theta0[i] as f64, grad[i] as f64, m0[i] as f64, v0[i] as f64);
                    let (want_p, want_m, want_v) = match rule {
                        Update::Sgd { lr, weight_decay, momentum } => {
                            let g = g + weight_decay as f64 * p;
                            let b = if momentum != 0.0 { momentum as f64 * mm + g } else { g };
                            (p - lr as f64 * b, if momentum != 0.0 { b } else { mm }, vv)
                        }
                        Update::Adam { decay, l2, w1, w2, step, bias2_sqrt, eps } => {
                            let p = p * decay as f64;
                            let g = g + l2 as f64 * p;
                            let m = (1.0 - w1 as f64) * mm + w1 as f64 * g;
                            let v = (1.0 - w2 as f64) * vv + w2 as f64 * g * g;
                            (p - step as f64 * m / (v.sqrt() / bias2_sqrt as f64 + eps as f64), m, v)
                        }
                    };
                    for (got, want, what) in [(theta[i], want_p, "θ"), (m[i], want_m, "m"), (v[i], want_v, "v")] {
                        let err = (got as f64 - want).abs();
                        assert!(err <= 1e-6 * want.abs().max(1e-3), "{rule:?} n={n} {what}[{i}]: {got} vs {want}");
                    }
                }
                close(sums, naive(&theta, &grad, &init), &format!("{rule:?} n={n}"));
                let (mut t2, mut m2, mut v2) = (theta0.clone(), m0.clone(), v0.clone());
                let none =
                    update(Rows { theta: &mut t2, grad: &grad, m: &mut m2, v: &mut v2, init: &init }, rule, false);
                assert_eq!((none, &t2), ([0.0; 3], &theta), "the same update without the sums");
            }
        }
    }

    #[test]
    fn host_slices_only_for_contiguous_f32_cpu_tensors() {
        let t = Tensor::from_slice(&[1f32, 2., 3., 4., 5., 6.]).view([3, 2]);
        let (row, double, transposed) = (t.get(1), t.to_kind(Kind::Double), t.transpose(0, 1));
        // SAFETY: no libtorch call touches the tensors while the slices live.
        assert_eq!(unsafe { host_slice(&row) }.map(|s| s.to_vec()), Some(vec![3f32, 4.]));
        assert!(unsafe { host_slice(&double) }.is_none());
        assert!(unsafe { host_slice(&transposed) }.is_none());
    }
}
