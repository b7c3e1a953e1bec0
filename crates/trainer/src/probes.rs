//! Probe formulas over a layer's features on the fixed probe batch (docs/SIGNALS.md,
//! "Probe metrics"). Everything is computed in f64 on the tensor's device; only plain numbers
//! leave this module.
//!
//! For features H (n × d; more dimensions are flattened to n × rest):
//! - `mean_cos`: mean over ordered pairs i ≠ j of cos(h_i, h_j); a zero row has cosine
//!   0 with every row (it still counts in the n(n−1) pairs). Computed exactly in O(nd)
//!   as (‖Σ_i u_i‖² − #nonzero rows) / (n(n−1)), u_i the unit rows.
//! - `diversity` = 1 − `mean_cos`.
//! - `eff_rank` (Roy & Vetterli 2007): exp(−Σ p_k ln p_k), p_k = σ_k / Σσ, σ the
//!   singular values of H, uncentred; 0 when H is all zeros.
//! - `entropy` (matrix-based von Neumann entropy, α = 1): rows L2-normalised (zero rows
//!   stay zero), K = U Uᵀ / n, entropy = −Σ λ ln λ over K's eigenvalues λ > 1e-12. With
//!   zero rows trace(K) < 1; K is then divided by its trace so that the λ sum to 1 (0
//!   when every row is zero). For n > d the eigenvalues come from the d × d matrix
//!   Uᵀ U / n, which has the same nonzero eigenvalues.
//! - `participation`: (Σ λ)² / Σ λ², λ the eigenvalues of the centred covariance;
//!   0 when all λ are 0 (taken as ‖Hc‖_F² ≤ 1e-24 ‖H‖_F², i.e. constant columns up to
//!   rounding). Since the covariance C is symmetric, Σ λ = tr C and
//!   Σ λ² = ‖C‖_F², so no eigendecomposition is needed; the 1/(n−1) factor cancels, and
//!   ‖Hcᵀ Hc‖_F = ‖Hc Hcᵀ‖_F lets the smaller Gram matrix stand in for C.
//! - attention entropy: for attention probabilities (…, q, k) whose last axis sums to
//!   1, the mean over all rows of −Σ_k p ln p (0 ln 0 = 0).
//!
//! With fewer than 2 samples `mean_cos` and `diversity` are NaN (no pairs).

use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// Eigenvalues of the normalised kernel at or under this are left out of the entropy.
pub const ENTROPY_EIG_FLOOR: f64 = 1e-12;
/// The covariance counts as all-zero (participation 0) when the centred features'
/// energy ‖Hc‖_F² is at most this fraction of ‖H‖_F²: constant columns leave only
/// rounding residue (~1e-32 of it) after centring.
pub const PARTICIPATION_ZERO_ENERGY: f64 = 1e-24;

/// The probe metrics of one layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbeMetrics {
    pub mean_cos: f64,
    pub diversity: f64,
    pub eff_rank: f64,
    pub entropy: f64,
    pub participation: f64,
}

pub use phasetop_core::event::{ATTENTION_METRIC, PROBE_METRICS};

impl ProbeMetrics {
    /// All metrics of features `h` (n × d or n × …).
    pub fn compute(h: &Tensor) -> ProbeMetrics {
        let h = as_matrix(h);
        let mean_cos = mean_cosine_of(&h);
        ProbeMetrics {
            mean_cos,
            diversity: 1.0 - mean_cos,
            eff_rank: effective_rank_of(&h),
            entropy: matrix_entropy_of(&h),
            participation: participation_ratio_of(&h),
        }
    }

    /// The metrics keyed `mean_cos`, `diversity`, `eff_rank`, `entropy`, `participation`.
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        let v = [self.mean_cos, self.diversity, self.eff_rank, self.entropy, self.participation];
        PROBE_METRICS.iter().zip(v).map(|(k, v)| (k.to_string(), v)).collect()
    }
}

/// The probe metrics of one captured layer: attention entropy for attention
/// probabilities, the feature metrics otherwise.
pub fn layer_metrics(feature: &crate::trainer::model::Feature) -> BTreeMap<String, f64> {
    if feature.is_attention {
        BTreeMap::from([(ATTENTION_METRIC.to_string(), attention_entropy(&feature.value))])
    } else {
        ProbeMetrics::compute(&feature.value).to_map()
    }
}

/// H as an f64 n × d matrix (n = first dimension; a 1-D tensor is n × 1).
fn as_matrix(h: &Tensor) -> Tensor {
    let n = h.size().first().copied().unwrap_or(1);
    h.to_kind(Kind::Double).reshape([n, -1])
}

/// Rows scaled to unit L2 norm; zero rows stay zero. Also the number of nonzero rows.
fn unit_rows(h: &Tensor) -> (Tensor, i64) {
    let norms = h.square().sum_dim_intlist(1, true, Kind::Double).sqrt();
    let nonzero = norms.gt(0.0);
    let count = nonzero.sum(Kind::Int64).int64_value(&[]);
    let safe = norms.where_scalarother(&nonzero, 1.0);
    (h / safe, count)
}

/// The smaller Gram matrix of `x`: xᵀx (d × d) when n > d, else x xᵀ (n × n). Both have
/// the same nonzero eigenvalues.
fn small_gram(x: &Tensor) -> Tensor {
    let (n, d) = (x.size()[0], x.size()[1]);
    if n > d { x.transpose(0, 1).mm(x) } else { x.mm(&x.transpose(0, 1)) }
}

fn scalar(t: &Tensor) -> f64 {
    t.double_value(&[])
}

/// Mean cosine similarity across samples; see the module docs.
pub fn mean_cosine(h: &Tensor) -> f64 {
    mean_cosine_of(&as_matrix(h))
}

fn mean_cosine_of(h: &Tensor) -> f64 {
    let n = h.size()[0];
    if n < 2 {
        return f64::NAN;
    }
    let (u, nonzero) = unit_rows(h);
    let s = u.sum_dim_intlist(0, false, Kind::Double);
    let total = scalar(&s.dot(&s));
    (total - nonzero as f64) / (n as f64 * (n - 1) as f64)
}

/// Effective rank (Roy & Vetterli 2007) of the uncentred features; see the module docs.
pub fn effective_rank(h: &Tensor) -> f64 {
    effective_rank_of(&as_matrix(h))
}

fn effective_rank_of(h: &Tensor) -> f64 {
    let s = singular_values(h);
    let total: f64 = s.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return 0.0;
    }
    let ent: f64 = s.iter().map(|&x| x / total).filter(|&p| p > 0.0).map(|p| -p * p.ln()).sum();
    ent.exp()
}

/// Singular values of `h` (LAPACK/cuSOLVER SVD without vectors). tch always passes
/// `linalg_svdvals`'s optional `driver` argument (as a string, possibly empty), which
/// CPU tensors reject, so this calls `torch::svd(some, compute_uv = false)`, which
/// reaches the same singular-value-only kernel on every device.
fn singular_values(h: &Tensor) -> Vec<f64> {
    let (_, s, _) = h.svd(true, false);
    Vec::<f64>::try_from(&s.to_device(tch::Device::Cpu)).expect("singular values")
}

/// Matrix-based (von Neumann, α = 1) entropy of the row-normalised features; see the
/// module docs.
pub fn matrix_entropy(h: &Tensor) -> f64 {
    matrix_entropy_of(&as_matrix(h))
}

fn matrix_entropy_of(h: &Tensor) -> f64 {
    let (u, nonzero) = unit_rows(h);
    if nonzero == 0 {
        return 0.0;
    }
    // K = U Uᵀ / n has trace nonzero / n; dividing by the trace is dividing by `nonzero`.
    let k = small_gram(&u) / nonzero as f64;
    let eig = Vec::<f64>::try_from(&k.linalg_eigvalsh("L").to_device(tch::Device::Cpu)).expect("eigenvalues");
    eig.into_iter().filter(|&l| l > ENTROPY_EIG_FLOOR).map(|l| -l * l.ln()).sum()
}

/// Participation ratio of the centred covariance; see the module docs.
pub fn participation_ratio(h: &Tensor) -> f64 {
    participation_ratio_of(&as_matrix(h))
}

fn participation_ratio_of(h: &Tensor) -> f64 {
    let hc = h - h.mean_dim(0, true, Kind::Double);
    let energy = scalar(&hc.square().sum(Kind::Double));
    if energy <= PARTICIPATION_ZERO_ENERGY * scalar(&h.square().sum(Kind::Double)) {
        return 0.0;
    }
    let g = small_gram(&hc);
    let frob2 = scalar(&g.square().sum(Kind::Double));
    // tr(Hcᵀ Hc) = ‖Hc‖_F².
    if frob2 <= 0.0 { 0.0 } else { energy * energy / frob2 }
}

/// Mean attention entropy: `p` holds attention probabilities (…, q, k) whose last axis
/// sums to 1; the result is the mean over all rows of −Σ_k p ln p (0 ln 0 = 0), in nats.
pub fn attention_entropy(p: &Tensor) -> f64 {
    let p = p.to_kind(Kind::Double);
    let k = p.size().last().copied().unwrap_or(1).max(1);
    let p = p.reshape([-1, k]);
    if p.size()[0] == 0 {
        return f64::NAN;
    }
    // xlogy(p, p) = p ln p with 0 ln 0 = 0.
    let h = -p.xlogy(&p).sum_dim_intlist(1, false, Kind::Double);
    scalar(&h.mean(Kind::Double))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svdvals_works_on_cpu() {
        let h = Tensor::from_slice(&[3.0f64, 0.0, 0.0, 4.0]).reshape([2, 2]);
        let s = singular_values(&h);
        assert!((s[0] - 4.0).abs() < 1e-12 && (s[1] - 3.0).abs() < 1e-12, "{s:?}");
    }
}
