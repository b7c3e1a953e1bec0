//! Per-point cost of each detector after 10^3 and after 10^6 points of history, side by
//! side: the ratio should be ~1 (O(1) per point, no rescans of history).
//!
//! cargo bench --bench detectors [-- MEASURED_POINTS]
//!
//! MEASURED_POINTS (default 1 000 000) is divided by 10 for the change-point detector,
//! which costs O(max_run) = 200 hypotheses per point.

use phasetop::signals::{DetectorKind, DetectorSpec};
use rand::{RngExt, SeedableRng};
use std::hint::black_box;
use std::time::Instant;

/// A loss-like series: level 1 with 1 % Gaussian noise (Box–Muller, seeded).
fn series(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let u: f64 = 1.0 - rng.random::<f64>();
            let v: f64 = rng.random::<f64>();
            1.0 + 0.01 * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        })
        .collect()
}

/// Nanoseconds per point for `measured` points pushed after `history` points, on a
/// detector fed that history.
fn per_point_ns(kind: DetectorKind, history: usize, measured: usize, values: &[f64]) -> f64 {
    let mut d = DetectorSpec::default_for(kind).build();
    for (s, &v) in values[..history].iter().enumerate() {
        black_box(d.push(s as u64, v));
    }
    let t = Instant::now();
    for (i, &v) in values[history..history + measured].iter().enumerate() {
        black_box(d.push((history + i) as u64, v));
    }
    t.elapsed().as_nanos() as f64 / measured as f64
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` only checks that it builds.
    if !std::env::args().any(|a| a == "--bench") {
        println!("detector benchmark: run it with `cargo bench --bench detectors`");
        return;
    }
    let measured: usize =
        std::env::args().skip(1).find(|a| !a.starts_with('-')).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let histories = [1_000usize, 1_000_000];
    let values = series(histories[1] + measured, 1);
    println!("per-point cost, measured after the history (best of 5)");
    println!("{:<12} {:>16} {:>16} {:>8}", "detector", "ns @ 1e3 hist", "ns @ 1e6 hist", "ratio");
    for kind in DetectorKind::ALL {
        let m = if kind == DetectorKind::Changepoint { measured / 10 } else { measured };
        // Best of 5, the two histories interleaved so that machine load affects both.
        let (mut a, mut b) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..5 {
            a = a.min(per_point_ns(kind, histories[0], m, &values));
            b = b.min(per_point_ns(kind, histories[1], m, &values));
        }
        println!("{:<12} {:>16.1} {:>16.1} {:>8.2}", kind.name(), a, b, b / a);
    }
}
