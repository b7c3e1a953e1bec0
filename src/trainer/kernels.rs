//! ‖θ‖, ‖∇θ‖ and ‖θ − θ₀‖ of a CPU model in one pass over its parameter store.
//!
//! libtorch needs three passes for these (θ − θ₀ written to a scratch row, then a norm
//! over three rows). On a ~1 ms step of a small model those passes were ~6 % of the run
//! (docs/PERFORMANCE.md); reading the three rows once and writing nothing costs about a
//! third of that. (A fused optimizer update in the same pass was tried and dropped: one
//! thread doing AdamW's square root and division is slower than libtorch's separate
//! calls on two threads.)
//!
//! The partial sums are f32 over blocks of `BLOCK` elements folded into f64, so their
//! rounding error does not grow with the model size.

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
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: as above.
        return unsafe { sums_avx2(theta, grad, init) };
    }
    sums_portable(theta, grad, init)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sums_avx2(theta: &[f32], grad: &[f32], init: &[f32]) -> Sums {
    sums_portable(theta, grad, init)
}

#[inline(always)]
fn sums_portable(theta: &[f32], grad: &[f32], init: &[f32]) -> Sums {
    let mut total = [0f64; 3];
    for ((t, g), i) in theta.chunks(BLOCK).zip(grad.chunks(BLOCK)).zip(init.chunks(BLOCK)) {
        let mut acc = [[0f32; LANES]; 3];
        for ((t, g), i) in t.chunks(LANES).zip(g.chunks(LANES)).zip(i.chunks(LANES)) {
            if let (Ok(t), Ok(g), Ok(i)) =
                (<&[f32; LANES]>::try_from(t), <&[f32; LANES]>::try_from(g), <&[f32; LANES]>::try_from(i))
            {
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
