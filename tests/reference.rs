//! Fidelity to PyTorch (issue 12, part 4): phasetop's loss curve equals a plain PyTorch
//! implementation's (`scripts/reference/train.py`, run with the project's venv) to 1e-4
//! relative over the first 200 steps, for the MLP and the transformer under SGD, Adam
//! and AdamW, starting from phasetop's initial weights (`init.safetensors`) and training
//! on the batches phasetop drew (`batches.safetensors`), both written by
//! `phasetop::trainer::reference`. Skipped, with a message, only when the venv is
//! missing (`./scripts/setup-torch.sh` makes it). The table this prints is the one in
//! docs/SIGNALS.md ("Fidelity to PyTorch"): `cargo test --release --test reference -- --nocapture`.

// `!(a <= b)` on purpose: a NaN must fail the comparison.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use phasetop::trainer::{Trainer, reference};
use std::path::{Path, PathBuf};
use std::process::Command;

const STEPS: u64 = 200;
const TOLERANCE: f64 = 1e-4;

fn python() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    p.exists().then_some(p)
}

struct Case {
    name: &'static str,
    task: &'static str,
    model: &'static str,
    phase: &'static str,
}

const MODULAR: &str = "kind = 'modular'\np = 23\ntrain_fraction = 0.5";
const TRANSFORMER: &str = "kind = 'transformer'\nd_model = 32\nheads = 4\nd_ff = 64";

const CASES: &[Case] = &[
    Case {
        name: "mlp · gaussian · sgd (momentum 0.9, L2)",
        task: "kind = 'gaussian'\ndim = 16\nclasses = 4\nn_train = 512\nn_val = 64",
        model: "kind = 'mlp'\ndepth = 2\nwidth = 64",
        phase: "optimizer = 'sgd'\nlr = 0.05\nmomentum = 0.9\nweight_decay = 0.0001\nbatch_size = 64",
    },
    Case {
        name: "mlp · parity · adam (L2)",
        task: "kind = 'parity'\ndim = 12\nk = 2\nn_train = 1024\nn_val = 64",
        model: "kind = 'mlp'\ndepth = 2\nwidth = 64\nactivation = 'tanh'",
        phase: "optimizer = 'adam'\nlr = 0.001\nweight_decay = 0.0001\nbatch_size = 64",
    },
    Case {
        name: "mlp · parity online, hinge · sgd",
        task: "kind = 'parity'\ndim = 12\nk = 2\nn_val = 64\nonline = true",
        model: "kind = 'mlp'\ndepth = 1\nwidth = 64",
        phase: "optimizer = 'sgd'\nlr = 0.05\nbatch_size = 32\nloss = [{ kind = 'hinge' }]",
    },
    Case {
        name: "mlp · modular one-hot · adamw",
        task: MODULAR,
        model: "kind = 'mlp'\ndepth = 2\nwidth = 64\nactivation = 'gelu'",
        phase: "optimizer = 'adamw'\nlr = 0.001\nweight_decay = 1.0\nbatch_size = 64",
    },
    Case {
        name: "mlp · modular embed 16 per position · adamw",
        task: MODULAR,
        model: "kind = 'mlp'\ndepth = 1\nwidth = 64\nembed = 16\nembed_shared = false",
        phase: "optimizer = 'adamw'\nlr = 0.001\nweight_decay = 1.0\nbatch_size = 64",
    },
    Case {
        name: "transformer · modular · sgd (momentum 0.9)",
        task: MODULAR,
        model: TRANSFORMER,
        phase: "optimizer = 'sgd'\nlr = 0.05\nmomentum = 0.9\nbatch_size = 64",
    },
    Case {
        name: "transformer · modular · adam",
        task: MODULAR,
        model: TRANSFORMER,
        phase: "optimizer = 'adam'\nlr = 0.001\nbetas = [0.9, 0.98]\nbatch_size = 64",
    },
    Case {
        name: "transformer · modular · adamw",
        task: MODULAR,
        model: TRANSFORMER,
        phase: "optimizer = 'adamw'\nlr = 0.001\nbetas = [0.9, 0.98]\nweight_decay = 1.0\nbatch_size = 64",
    },
];

fn config_text(c: &Case) -> String {
    format!(
        "[run]\nname = 'ref'\nseed = 3\nthreads = 1\nmax_steps = {STEPS}\n\n[task]\n{}\n\n[model]\n{}\n\n\
         [eval]\nevery = 0\n\n[[phase]]\nname = 'main'\n{}\n",
        c.task, c.model, c.phase
    )
}

/// phasetop's losses for the case, with its initial weights and batches written to `dir`.
fn phasetop_losses(text: &str, dir: &Path) -> Vec<f64> {
    let cfg = phasetop::config::parse("ref.toml", text).unwrap();
    let mut t = Trainer::new(&cfg, cfg.run.seed).unwrap();
    reference::write_init(&t, &dir.join("init.safetensors")).unwrap();
    reference::write_batches(&t, &dir.join("batches.safetensors"), STEPS).unwrap();
    (0..STEPS).map(|_| t.train_step()["train_loss"]).collect()
}

fn pytorch_losses(python: &Path, config: &Path, dir: &Path) -> Vec<f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/reference/train.py");
    let out = Command::new(python).arg(script).arg(config).arg(dir).output().unwrap();
    assert!(out.status.success(), "reference failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["losses"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn loss_curves_equal_pytorch_over_200_steps() {
    let Some(python) = python() else {
        eprintln!("SKIPPED: no venv at .venv (run ./scripts/setup-torch.sh): the PyTorch reference cannot run");
        return;
    };
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for case in CASES {
        let dir = tempfile::tempdir().unwrap();
        let text = config_text(case);
        let config = dir.path().join("ref.toml");
        std::fs::write(&config, &text).unwrap();
        let ours = phasetop_losses(&text, dir.path());
        let theirs = pytorch_losses(&python, &config, dir.path());
        assert_eq!(ours.len(), theirs.len(), "{}", case.name);
        let (mut worst, mut at) = (0.0f64, 0);
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            // Both are f32 losses; JSON may move the f64 it parses by one ulp.
            let (a, b) = (f64::from(*a as f32), f64::from(*b as f32));
            let rel = (a - b).abs() / b.abs().max(1e-12);
            if !(rel <= worst) {
                (worst, at) = (rel, i + 1);
            }
        }
        let diff = if worst == 0.0 { "0 (bit for bit)".to_string() } else { format!("{worst:.1e} (step {at})") };
        let row = format!("| {} | {diff} | {:.4} → {:.4} |", case.name, ours[0], ours[ours.len() - 1]);
        if !(worst <= TOLERANCE) {
            failures.push(format!("{row}\n  phasetop {:?}\n  pytorch  {:?}", &ours[..5], &theirs[..5]));
        }
        rows.push(row);
    }
    println!("| model · task · optimizer | max relative difference, steps 1–{STEPS} | loss, step 1 → {STEPS} |");
    println!("|---|---|---|");
    for r in &rows {
        println!("{r}");
    }
    assert!(failures.is_empty(), "loss curves differ by more than {TOLERANCE} relative:\n{}", failures.join("\n"));
}
