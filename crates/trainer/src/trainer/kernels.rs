//! CPU kernels over the trainer's flat parameter store: the optimizer update with ‖θ‖,
//! ‖∇θ‖ and ‖θ − θ₀‖ taken in the same pass, and those norms alone.
//!
//! libtorch needs a pass per operation: AdamW is nine calls over all the parameters and
//! the norms three more. On a ~1 ms step of a small model that was ~150 µs of update and
//! ~6 % of the run in norms (docs/PERFORMANCE.md); one pass (two for Adam, around
//! libtorch's square root) takes 85–91 µs with the norms, half of it that square root.
//! (A first fused update in plain Rust was slower than libtorch on two threads: the
//! compiler kept its accumulators on the stack and issued scalar square roots. These are written with AVX2 intrinsics,
//! and a portable twin of each does the same operations in the same order, so every CPU
//! computes the same bits.)
//!
//! The update copies libtorch's element-wise arithmetic exactly, in f32 as libtorch
//! computes f32 tensors: one rounding per multiply, divide and add, except `lerp`, which
//! libtorch computes as one fused multiply-add. A unit test (`optim.rs`) compares the two
//! bit for bit, so which path updated a run changes none of its numbers. The partial
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

/// Σθ², Σ(∇θ)², Σ(θ − θ₀)² over three equally long rows, without changing them.
pub fn sums_of_squares(theta: &[f32], grad: &[f32], init: &[f32]) -> Sums {
    assert!(theta.len() == grad.len() && grad.len() == init.len(), "rows of one store");
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just now).
        return unsafe { sums_avx2(theta, grad, init) };
    }
    sums_portable(theta, grad, init)
}

/// The same sums in the same order as [`sums_portable`] (lanes `0..8` and `8..16` are
/// the two vector accumulators; a multiply then an add, not a fused multiply-add), so
/// every CPU reports the same bits. Written with intrinsics because the compiler kept
/// the portable loop's sixteen accumulators on the stack: 17 µs for a 38 k-parameter
/// model instead of 4.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sums_avx2(theta: &[f32], grad: &[f32], init: &[f32]) -> Sums {
    use std::arch::x86_64::*;
    let mut total = [0f64; 3];
    for ((t, g), i) in theta.chunks(BLOCK).zip(grad.chunks(BLOCK)).zip(init.chunks(BLOCK)) {
        let whole = t.len() / LANES * LANES;
        let mut v = [_mm256_setzero_ps(); 6];
        let mut k = 0;
        while k < whole {
            for half in 0..2 {
                let at = k + half * 8;
                // SAFETY: `at + 8 <= whole <= len` of all three equally long chunks.
                let (tv, gv, iv) = unsafe {
                    (
                        _mm256_loadu_ps(t.as_ptr().add(at)),
                        _mm256_loadu_ps(g.as_ptr().add(at)),
                        _mm256_loadu_ps(i.as_ptr().add(at)),
                    )
                };
                let d = _mm256_sub_ps(tv, iv);
                v[half] = _mm256_add_ps(v[half], _mm256_mul_ps(tv, tv));
                v[2 + half] = _mm256_add_ps(v[2 + half], _mm256_mul_ps(gv, gv));
                v[4 + half] = _mm256_add_ps(v[4 + half], _mm256_mul_ps(d, d));
            }
            k += LANES;
        }
        let mut acc = [[0f32; LANES]; 3];
        store_lanes(&mut acc, &v);
        add_tail(&mut acc, &t[whole..], &g[whole..], &i[whole..]);
        fold(&mut total, &acc);
    }
    total
}

fn sums_portable(theta: &[f32], grad: &[f32], init: &[f32]) -> Sums {
    let mut total = [0f64; 3];
    for ((t, g), i) in theta.chunks(BLOCK).zip(grad.chunks(BLOCK)).zip(init.chunks(BLOCK)) {
        let mut acc = [[0f32; LANES]; 3];
        for ((t, g), i) in t.chunks(LANES).zip(g.chunks(LANES)).zip(i.chunks(LANES)) {
            add_tail(&mut acc, t, g, i);
        }
        fold(&mut total, &acc);
    }
    total
}

/// Adds at most `LANES` elements, element `l` into lane `l`.
#[inline(always)]
fn add_tail(acc: &mut [[f32; LANES]; 3], t: &[f32], g: &[f32], i: &[f32]) {
    for l in 0..t.len() {
        let d = t[l] - i[l];
        acc[0][l] += t[l] * t[l];
        acc[1][l] += g[l] * g[l];
        acc[2][l] += d * d;
    }
}

#[inline(always)]
fn fold(total: &mut Sums, acc: &[[f32; LANES]; 3]) {
    for (sum, lanes) in total.iter_mut().zip(acc) {
        *sum += lanes.iter().map(|&x| f64::from(x)).sum::<f64>();
    }
}

/// One optimizer update of a run of parameters, as f32 coefficients fixed for the call.
#[derive(Debug, Clone, Copy)]
pub enum Update {
    /// `g ← g + wd·θ` (when `wd` ≠ 0); with momentum `b ← μ·b + g`, `θ ← θ − lr·b`, else
    /// `θ ← θ − lr·g`.
    ///
    /// `torch`: PyTorch's rounding (`torch.optim.SGD`): the decay and the step are each
    /// one fused multiply-add (`grad.add(param, alpha=wd)`, `param.add_(buf, alpha=-lr)`),
    /// where without it each is a multiply and an add, rounded twice (phasetop before
    /// issue 12; kept for `init = "tch"` runs so their numbers do not move).
    Sgd { lr: f32, wd: f32, momentum: f32, torch: bool },
    /// Adam's first half (`decay` = 1: L2 `g + wd·θ` in the gradient) or AdamW's (`wd` = 0
    /// and `decay` = 1 − lr·wd applied to θ first): `m ← lerp(m, g, w1)`,
    /// `v ← lerp(v, g², w2)`. Takes no sums. `torch`: PyTorch's rounding
    /// (`torch.optim.Adam`): the L2 term one fused multiply-add, and
    /// `v ← fma(w2·g, g, v·b2)` (b2 = β₂; `mul_` then `addcmul_`, whose
    /// last multiply and add libtorch fuses) instead of the lerp.
    AdamMoments { decay: f32, wd: f32, w1: f32, w2: f32, b2: f32, torch: bool },
    /// Adam's second half, with the `v` row holding √v:
    /// `θ ← θ + (m·step)/(√v / bias2_sqrt + eps)` with `step` = −lr / (1 − β₁ᵗ). The square
    /// root is libtorch's, between the halves: its vectorised `sqrt` is not correctly
    /// rounded (1 in 6 results differ from IEEE's in the last bit), and taking it there
    /// keeps every run's numbers those of the libtorch update.
    AdamApply { bias2_sqrt: f32, eps: f32, step: f32 },
}

/// libtorch's vectorised `lerp`: `a + w(b − a)` for |w| < ½, else `b + (w − 1)(b − a)`,
/// each as one fused multiply-add.
#[inline(always)]
fn lerp(a: f32, b: f32, w: f32) -> f32 {
    if w.abs() < 0.5 { w.mul_add(b - a, a) } else { (w - 1.0).mul_add(b - a, b) }
}

/// The update of element `k`, and its squares added to lane `lane`.
#[inline(always)]
fn update_one<const SUMS: bool>(u: &Update, k: usize, lane: usize, rows: &mut Rows<'_>, acc: &mut [[f32; LANES]; 3]) {
    let (mut p, g) = (rows.theta[k], rows.grad[k]);
    match *u {
        Update::Sgd { lr, wd, momentum, torch } => {
            let g = match (wd != 0.0, torch) {
                (false, _) => g,
                (true, false) => g + p * wd,
                (true, true) => p.mul_add(wd, g),
            };
            let step = if momentum != 0.0 {
                let b = rows.m[k] * momentum + g;
                rows.m[k] = b;
                b
            } else {
                g
            };
            p = if torch { step.mul_add(-lr, p) } else { p - step * lr };
        }
        Update::AdamMoments { decay, wd, w1, w2, b2, torch } => {
            if decay != 1.0 {
                p *= decay;
            }
            let g = match (wd != 0.0, torch) {
                (false, _) => g,
                (true, false) => g + p * wd,
                (true, true) => p.mul_add(wd, g),
            };
            rows.m[k] = lerp(rows.m[k], g, w1);
            rows.v[k] = if torch { (w2 * g).mul_add(g, rows.v[k] * b2) } else { lerp(rows.v[k], g * g, w2) };
        }
        Update::AdamApply { bias2_sqrt, eps, step } => {
            p += (rows.m[k] * step) / (rows.v[k] / bias2_sqrt + eps);
        }
    }
    rows.theta[k] = p;
    if SUMS {
        let (g, d) = (rows.grad[k], p - rows.init[k]);
        acc[0][lane] += p * p;
        acc[1][lane] += g * g;
        acc[2][lane] += d * d;
    }
}

/// The rows one update reads and writes, all of one length (`v` may be empty for SGD,
/// `init` when no sums are wanted).
pub struct Rows<'a> {
    pub theta: &'a mut [f32],
    pub grad: &'a [f32],
    pub m: &'a mut [f32],
    pub v: &'a mut [f32],
    pub init: &'a [f32],
}

/// Applies `u` to every element of `rows`; with `SUMS`, returns Σθ², Σ(∇θ)², Σ(θ − θ₀)²
/// of the updated parameters (as [`sums_of_squares`] would after the update), else zeros.
pub fn update<const SUMS: bool>(u: &Update, mut rows: Rows<'_>) -> Sums {
    let n = rows.theta.len();
    assert!(rows.grad.len() == n && rows.m.len() == n, "rows of one store");
    assert!(matches!(u, Update::Sgd { .. }) || rows.v.len() == n, "Adam needs its second moment (or its root)");
    assert!(!SUMS || rows.init.len() == n, "sums need the initial values");
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just now).
        return unsafe { update_avx2::<SUMS>(u, &mut rows) };
    }
    update_portable::<SUMS>(u, &mut rows)
}

fn update_portable<const SUMS: bool>(u: &Update, rows: &mut Rows<'_>) -> Sums {
    let mut total = [0f64; 3];
    let n = rows.theta.len();
    for start in (0..n).step_by(BLOCK) {
        let mut acc = [[0f32; LANES]; 3];
        for k in start..(start + BLOCK).min(n) {
            update_one::<SUMS>(u, k, (k - start) % LANES, rows, &mut acc);
        }
        if SUMS {
            fold(&mut total, &acc);
        }
    }
    total
}

/// [`update_portable`] eight lanes at a time: the same operations in the same order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn update_avx2<const SUMS: bool>(u: &Update, rows: &mut Rows<'_>) -> Sums {
    use std::arch::x86_64::*;
    let n = rows.theta.len();
    let mut total = [0f64; 3];
    let splat = _mm256_set1_ps;
    let lerp8 = |a: __m256, b: __m256, w: f32| {
        if w.abs() < 0.5 {
            _mm256_fmadd_ps(splat(w), _mm256_sub_ps(b, a), a)
        } else {
            _mm256_fmadd_ps(splat(w - 1.0), _mm256_sub_ps(b, a), b)
        }
    };
    for start in (0..n).step_by(BLOCK) {
        let end = (start + BLOCK).min(n);
        let whole = start + (end - start) / LANES * LANES;
        let mut sums = [_mm256_setzero_ps(); 6];
        let mut k = start;
        while k < whole {
            for half in 0..2 {
                let at = k + half * 8;
                // SAFETY: `at + 8 <= whole <= n`, the length of every row this touches
                // (v only for Adam, init only with SUMS: asserted by `update`).
                unsafe {
                    let (tp, mp) = (rows.theta.as_mut_ptr().add(at), rows.m.as_mut_ptr().add(at));
                    let g = _mm256_loadu_ps(rows.grad.as_ptr().add(at));
                    let mut p = _mm256_loadu_ps(tp);
                    match *u {
                        Update::Sgd { lr, wd, momentum, torch } => {
                            let g = match (wd != 0.0, torch) {
                                (false, _) => g,
                                (true, false) => _mm256_add_ps(g, _mm256_mul_ps(p, splat(wd))),
                                (true, true) => _mm256_fmadd_ps(p, splat(wd), g),
                            };
                            let step = if momentum != 0.0 {
                                let b = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(mp), splat(momentum)), g);
                                _mm256_storeu_ps(mp, b);
                                b
                            } else {
                                g
                            };
                            p = if torch {
                                _mm256_fmadd_ps(step, splat(-lr), p)
                            } else {
                                _mm256_sub_ps(p, _mm256_mul_ps(step, splat(lr)))
                            };
                        }
                        Update::AdamMoments { decay, wd, w1, w2, b2, torch } => {
                            let vp = rows.v.as_mut_ptr().add(at);
                            if decay != 1.0 {
                                p = _mm256_mul_ps(p, splat(decay));
                            }
                            let g = match (wd != 0.0, torch) {
                                (false, _) => g,
                                (true, false) => _mm256_add_ps(g, _mm256_mul_ps(p, splat(wd))),
                                (true, true) => _mm256_fmadd_ps(p, splat(wd), g),
                            };
                            _mm256_storeu_ps(mp, lerp8(_mm256_loadu_ps(mp), g, w1));
                            let v = _mm256_loadu_ps(vp);
                            let v = if torch {
                                _mm256_fmadd_ps(_mm256_mul_ps(splat(w2), g), g, _mm256_mul_ps(v, splat(b2)))
                            } else {
                                lerp8(v, _mm256_mul_ps(g, g), w2)
                            };
                            _mm256_storeu_ps(vp, v);
                        }
                        Update::AdamApply { bias2_sqrt, eps, step } => {
                            let root = _mm256_loadu_ps(rows.v.as_ptr().add(at));
                            let denom = _mm256_add_ps(_mm256_div_ps(root, splat(bias2_sqrt)), splat(eps));
                            p = _mm256_add_ps(p, _mm256_div_ps(_mm256_mul_ps(_mm256_loadu_ps(mp), splat(step)), denom));
                        }
                    }
                    _mm256_storeu_ps(tp, p);
                    if SUMS {
                        let raw = _mm256_loadu_ps(rows.grad.as_ptr().add(at));
                        let d = _mm256_sub_ps(p, _mm256_loadu_ps(rows.init.as_ptr().add(at)));
                        sums[half] = _mm256_add_ps(sums[half], _mm256_mul_ps(p, p));
                        sums[2 + half] = _mm256_add_ps(sums[2 + half], _mm256_mul_ps(raw, raw));
                        sums[4 + half] = _mm256_add_ps(sums[4 + half], _mm256_mul_ps(d, d));
                    }
                }
            }
            k += LANES;
        }
        let mut acc = [[0f32; LANES]; 3];
        if SUMS {
            store_lanes(&mut acc, &sums);
        }
        for k in whole..end {
            update_one::<SUMS>(u, k, k - whole, rows, &mut acc);
        }
        if SUMS {
            fold(&mut total, &acc);
        }
    }
    total
}

/// Two 8-lane vectors per sum into that sum's `LANES` lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn store_lanes(acc: &mut [[f32; LANES]; 3], v: &[std::arch::x86_64::__m256; 6]) {
    use std::arch::x86_64::_mm256_storeu_ps;
    for (sum, lanes) in acc.iter_mut().enumerate() {
        // SAFETY: each half of a LANES-wide row is 8 f32s.
        unsafe {
            _mm256_storeu_ps(lanes.as_mut_ptr(), v[2 * sum]);
            _mm256_storeu_ps(lanes.as_mut_ptr().add(8), v[2 * sum + 1]);
        }
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
#[allow(clippy::mut_from_ref)] // the caller upholds the aliasing rules (see # Safety)
pub unsafe fn host_slice(t: &Tensor) -> Option<&mut [f32]> {
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

    #[test]
    fn host_slices_only_for_contiguous_f32_cpu_tensors() {
        let t = Tensor::from_slice(&[1f32, 2., 3., 4., 5., 6.]).view([3, 2]);
        let (row, double, transposed) = (t.get(1), t.to_kind(Kind::Double), t.transpose(0, 1));
        // SAFETY: no libtorch call touches the tensors while the slices live.
        assert_eq!(unsafe { host_slice(&row) }.map(|s| s.to_vec()), Some(vec![3f32, 4.]));
        assert!(unsafe { host_slice(&double) }.is_none());
        assert!(unsafe { host_slice(&transposed) }.is_none());
    }

    /// Every CPU computes the same bits: the AVX2 update against its portable twin.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_update_equals_the_portable_one_bit_for_bit() {
        if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
            return;
        }
        let updates = [
            Update::Sgd { lr: 0.1, wd: 0.01, momentum: 0.9, torch: false },
            Update::Sgd { lr: 0.1, wd: 0.0, momentum: 0.0, torch: false },
            Update::Sgd { lr: 0.1, wd: 0.01, momentum: 0.9, torch: true },
            Update::Sgd { lr: 0.1, wd: 0.0, momentum: 0.0, torch: true },
            Update::AdamMoments { decay: 0.999, wd: 0.0, w1: 0.1, w2: 0.001, b2: 0.999, torch: false },
            Update::AdamMoments { decay: 1.0, wd: 0.1, w1: 0.6, w2: 0.7, b2: 0.3, torch: false },
            Update::AdamMoments { decay: 0.999, wd: 0.0, w1: 0.1, w2: 0.001, b2: 0.999, torch: true },
            Update::AdamMoments { decay: 1.0, wd: 0.1, w1: 0.6, w2: 0.7, b2: 0.3, torch: true },
            Update::AdamApply { bias2_sqrt: 0.03, eps: 1e-8, step: -0.01 },
        ];
        for n in [0usize, 5, 16, 1023, 1024, 1041, 5000] {
            let (theta, grad, init) = rows(n);
            for u in &updates {
                let run = |avx: bool| {
                    let (mut t, mut m, mut v) =
                        (theta.clone(), grad.iter().map(|g| g * 0.5).collect::<Vec<_>>(), vec![0.01f32; n]);
                    let mut rows = Rows { theta: &mut t, grad: &grad, m: &mut m, v: &mut v, init: &init };
                    // SAFETY: AVX2 checked above.
                    let sums = if avx {
                        unsafe { update_avx2::<true>(u, &mut rows) }
                    } else {
                        update_portable::<true>(u, &mut rows)
                    };
                    (t, m, v, sums)
                };
                let (a, b) = (run(true), run(false));
                let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!((bits(&a.0), bits(&a.1), bits(&a.2)), (bits(&b.0), bits(&b.1), bits(&b.2)), "{u:?} n={n}");
                assert_eq!(a.3, b.3, "{u:?} n={n}: sums");
                assert_eq!(a.3, sums_of_squares(&a.0, &grad, &init), "{u:?} n={n}: the sums of the updated rows");
            }
        }
    }
}
