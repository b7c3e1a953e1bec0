//! Issue 15's figures, side by side in one run, one thread each:
//! - a TorchScript module (examples/export_model.py's ResNet, data/resnet.pt) trained by
//!   phasetop against the same model in PyTorch eager (scripts/bench_torchscript.py):
//!   Adam, batch 64, the digits;
//! - configs/digits.toml's CNN against its PyTorch twin (examples/digits_ref.py's);
//! - the monitoring overhead of configs/digits.toml's own run (its probes, evaluations,
//!   detectors and log), as the run itself accounts it at its end.
//!
//! phasetop's steps compute its per-step metrics (accuracy, norms) as every run does;
//! the peers compute the loss only.
//!
//! cargo bench --bench torchscript [-- STEPS]   (needs ./scripts/setup-torch.sh's venv and data)

use phasetop::trainer::Trainer;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn python() -> std::path::PathBuf {
    let p = Path::new(ROOT).join(".venv/bin/python");
    assert!(p.exists(), "no venv at .venv: run ./scripts/setup-torch.sh");
    p
}

/// phasetop's steps/s on `config` from phase `phase` on, after 20 warm-up steps.
fn phasetop(config: &str, phase: usize, steps: u64) -> f64 {
    let loaded = phasetop::config::load(&Path::new(ROOT).join(config)).unwrap_or_else(|e| panic!("{e}"));
    let mut t = Trainer::new(&loaded.config, 0).unwrap();
    t.switch_to(phase);
    for _ in 0..20 {
        t.train_step();
    }
    let started = Instant::now();
    for _ in 0..steps {
        t.train_step();
    }
    steps as f64 / started.elapsed().as_secs_f64()
}

fn peer(kind: &str, steps: u64) -> f64 {
    let script = Path::new(ROOT).join("scripts/bench_torchscript.py");
    let out = Command::new(python()).arg(script).args([kind, &steps.to_string(), "1"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["steps_per_s"].as_f64().unwrap()
}

fn main() {
    // `cargo bench` passes --bench; under `cargo test --all-targets` (a debug build) it is
    // only built: the measurement needs Python to export the module and minutes of steps.
    if !std::env::args().any(|a| a == "--bench") {
        println!("torchscript benchmark: run it with `cargo bench --bench torchscript`");
        return;
    }
    let steps: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(500);
    let data = Path::new(ROOT).join("data");
    assert!(data.join("digits.safetensors").exists(), "no data/digits.safetensors: run ./scripts/setup-torch.sh");
    let export = Path::new(ROOT).join("examples/export_model.py");
    let out = Command::new(python()).arg(export).arg(data.join("resnet.pt")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    println!("{steps} steps each, 1 thread, batch 64, Adam; the best of 3 alternating rounds (a busy machine");
    println!("slows one side at a time)");
    println!("{:<44} {:>10} {:>10} {:>7}", "", "phasetop", "PyTorch", "ratio");
    // The TorchScript config's phase 1 ("full") trains every parameter, as the peer does;
    // the digits config's phase 1 ("clean") adds no input noise, so both sides run the
    // same step.
    let mut best = [(0.0f64, 0.0f64); 2];
    for _ in 0..3 {
        let round = [
            (phasetop("configs/torchscript.toml", 1, steps), peer("resnet", steps)),
            (phasetop("configs/digits.toml", 1, steps), peer("cnn", steps)),
        ];
        for (b, r) in best.iter_mut().zip(round) {
            *b = (b.0.max(r.0), b.1.max(r.1));
        }
    }
    let names = ["TorchScript ResNet vs PyTorch eager", "CNN on digits vs its PyTorch twin"];
    for (name, (ours, theirs)) in names.into_iter().zip(best) {
        println!("{name:<44} {ours:>8.1}/s {theirs:>8.1}/s {:>6.2}×", ours / theirs);
    }

    // The digits run as configured (probes every 100 steps on 256 images, evaluations,
    // detectors, the log), by its own account.
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_phasetop"))
        .args(["train", "--headless", "--run-dir"])
        .arg(tmp.path().join("run"))
        .arg(Path::new(ROOT).join("configs/digits.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.contains("monitoring took")).unwrap_or("no monitoring line");
    println!("configs/digits.toml run: {}", line.split_once(": ").map_or(line, |(_, r)| r));
}
