//! Writes what `scripts/reference/train.py` needs to retrace a config in plain PyTorch,
//! and phasetop's own losses to compare with:
//!
//!     cargo run --release --example reference -- CONFIG.toml OUT [STEPS] [--data-only]  (200)
//!     .venv/bin/python scripts/reference/train.py CONFIG.toml OUT
//!
//! OUT gets `init.safetensors` (initial weights, `init.<name>`), `batches.safetensors`
//! (the first STEPS batches: `x`, `y`), `heldout.safetensors` (the held-out split the
//! evals score: `x`, `y`) and, unless `--data-only`, `phasetop.json` ({"losses": [...]},
//! the `train_loss` of steps 1..=STEPS). The run uses the config's `[run] seed`.
//! `scripts/reference/phenomena.py` uses `--data-only` and trains phasetop with the
//! release binary instead.

use phasetop::trainer::{Trainer, reference};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let data_only = args.iter().any(|a| a == "--data-only");
    args.retain(|a| a != "--data-only");
    let [config, out, rest @ ..] = args.as_slice() else {
        eprintln!("usage: reference CONFIG.toml OUT [STEPS] [--data-only]");
        std::process::exit(2);
    };
    let steps: u64 = rest.first().map_or(Ok(200), |s| s.parse())?;
    let loaded = phasetop::config::load(&PathBuf::from(config)).map_err(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    })?;
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out)?;
    let mut t = Trainer::new(&loaded.config, loaded.config.run.seed)?;
    reference::write_init(&t, &out.join("init.safetensors"))?;
    reference::write_batches(&t, &out.join("batches.safetensors"), steps)?;
    reference::write_heldout(&t, &out.join("heldout.safetensors"))?;
    if data_only {
        eprintln!("wrote {}/{{init,batches,heldout}}.safetensors ({steps} steps)", out.display());
        return Ok(());
    }
    let losses: Vec<f64> = (0..steps).map(|_| t.train_step()["train_loss"]).collect();
    std::fs::write(out.join("phasetop.json"), serde_json::json!({ "losses": losses }).to_string())?;
    eprintln!("wrote {}/{{init,batches,heldout}}.safetensors and phasetop.json ({steps} steps)", out.display());
    Ok(())
}
