//! Where a second libtorch thread starts to pay (issue 16 item 16): steps/s of the same
//! MLP at 1 and 2 intra-op threads, for model sizes from tiny to large, measured side by
//! side in one run (alternated, best of three each). `threads = 0` picks 1 thread below
//! `trainer::threads::SMALL_WORK` multiply-adds a step (parameters × batch) and one per
//! core above: this bench is what that threshold rests on (docs/PERFORMANCE.md).
//!
//! cargo bench --bench threads [-- STEPS]

use phasetop::config;
use phasetop::trainer::{Trainer, threads};
use std::time::Instant;

fn cfg(width: usize, depth: usize, batch: usize, threads: usize) -> config::Config {
    let src = format!(
        "[run]\nname='t'\nmax_steps=1000000\nthreads={threads}\n[task]\nkind='gaussian'\ndim=32\nclasses=8\nn_train=4096\n\
         [model]\nkind='mlp'\ndepth={depth}\nwidth={width}\n[eval]\nevery=0\n[checkpoint]\nevery=0\n\
         [[phase]]\nname='main'\noptimizer='adamw'\nlr=0.001\nbatch_size={batch}\n"
    );
    config::parse("bench.toml", &src).unwrap()
}

fn steps_per_s(t: &mut Trainer, steps: usize) -> f64 {
    let started = Instant::now();
    for _ in 0..steps {
        t.train_step();
    }
    steps as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; under `cargo test --all-targets` (a debug build) only a
    // smoke run: the smallest model, a few steps, one round.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let steps: usize = std::env::args().skip(1).find_map(|s| s.parse().ok()).unwrap_or(if smoke { 2 } else { 200 });
    if smoke {
        println!("threads benchmark: a smoke run only; measure with `cargo bench --bench threads`");
    }
    println!("MLP on 32 inputs, AdamW, batch 128; {steps} steps a measure, best of 3 alternated");
    println!(
        "{:>6} {:>5} {:>10} {:>12} {:>10} {:>10} {:>8} {:>6}",
        "width", "depth", "params", "work/step", "1 thr/s", "2 thr/s", "2 / 1", "auto"
    );
    let sizes = [(16, 1), (64, 2), (128, 2), (256, 2), (512, 2), (1024, 2), (2048, 2)];
    for (width, depth) in sizes.into_iter().take(if smoke { 1 } else { sizes.len() }) {
        let batch = 128;
        let c = cfg(width, depth, batch, 1);
        let mut t = Trainer::new(&c, 0).unwrap();
        let params: usize = t.parameters().iter().map(|(_, p)| p.numel()).sum();
        let n = if smoke { steps } else { if params > 1_000_000 { steps / 4 } else { steps }.max(10) };
        let (mut one, mut two) = (0f64, 0f64);
        for _ in 0..if smoke { 1 } else { 3 } {
            phasetop::tch::set_num_threads(1);
            steps_per_s(&mut t, n / 10 + 1);
            one = one.max(steps_per_s(&mut t, n));
            phasetop::tch::set_num_threads(2);
            steps_per_s(&mut t, n / 10 + 1);
            two = two.max(steps_per_s(&mut t, n));
        }
        let work = params as f64 * batch as f64;
        println!(
            "{width:>6} {depth:>5} {params:>10} {work:>12.2e} {one:>10.0} {two:>10.0} {:>8.2} {:>6}",
            two / one,
            threads::auto(params, batch, 2)
        );
    }
}
