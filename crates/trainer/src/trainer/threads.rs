//! libtorch's intra-op thread count when `[run] threads = 0` (unset): one thread for
//! small models, one per core for large ones.
//!
//! On a small model a step is a few hundred microseconds of many small kernels; a second
//! thread adds a fork/join to each of them and gains nothing, and on a machine whose
//! cores are busy (the dashboard, other jobs) libtorch's threads wait for each other at
//! every kernel: the demo fell from 400 to 5–9 steps/s with 2 threads on a loaded
//! 2-core machine. `benches/threads.rs` measures 1 against 2 threads across model sizes
//! (docs/PERFORMANCE.md, "Threads"): a second thread pays only once a step's work
//! (parameters × batch, multiply-adds of the forward pass) reaches [`SMALL_WORK`].

/// Multiply-adds of a step's forward pass (parameters × batch) below which one thread
/// is used; measured with `cargo bench --bench threads` (docs/PERFORMANCE.md).
pub const SMALL_WORK: f64 = 1.0e8;

/// The thread count for `threads = 0`: 1 below [`SMALL_WORK`], else `cores`.
pub fn auto(params: usize, batch: usize, cores: usize) -> usize {
    if (params as f64) * (batch as f64) < SMALL_WORK { 1 } else { cores.max(1) }
}

/// The cores this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_models_get_one_thread_large_ones_every_core() {
        // The demo: an MLP of ~20 k parameters at batch 128.
        assert_eq!(auto(20_000, 128, 2), 1);
        assert_eq!(auto(20_000, 128, 16), 1);
        // A 4 M-parameter model at batch 256: every core.
        assert_eq!(auto(4_000_000, 256, 16), 16);
        assert_eq!(auto(4_000_000, 256, 0), 1);
    }
}
