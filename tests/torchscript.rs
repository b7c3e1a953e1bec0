//! `[model] kind = "torchscript"` and `[task] kind = "tensors"` (issue 15), against real
//! PyTorch: the modules are made by the project's venv (tests/fixtures/torchscript/
//! modules.py). A TorchScript copy of phasetop's own MLP retraces its loss curve; a
//! TorchScript run resumes, branches and rolls back exactly (checkpoint equality, batch
//! norm's running statistics included) and its frozen prefixes do not move; probes via
//! `features` equal the numpy formulas of scripts/gen_probe_fixtures.py on the features
//! PyTorch computes; every error a user meets is reported with its location, exit 2.
//! Missing the venv fails unless `PHASETOP_SKIP_PYTHON=1` (as tests/interop.rs).

use phasetop::tch;
use phasetop::trainer::{Trainer, checkpoint};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tch::Tensor;

const BIN: &str = env!("CARGO_BIN_EXE_phasetop");

fn python() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("PHASETOP_SKIP_PYTHON").is_some(),
        "no venv at .venv: run ./scripts/setup-torch.sh (or set PHASETOP_SKIP_PYTHON=1 to skip)"
    );
    eprintln!("SKIPPED: no venv (PHASETOP_SKIP_PYTHON set)");
    None
}

/// Runs tests/fixtures/torchscript/modules.py with `args`; returns its stdout.
fn modules(py: &Path, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torchscript/modules.py");
    let out = Command::new(py).arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "modules.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn bin(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn load(dir: &Path, name: &str, body: &str) -> phasetop::config::LoadedConfig {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    phasetop::config::load(&p).unwrap_or_else(|e| panic!("{e}"))
}

const STEPS: u64 = 100;

/// An MLP exported from PyTorch with phasetop's own MLP's initial weights trains to the
/// same losses (same optimizer, same batches) within 1e-5 relative for 100 steps.
#[test]
fn a_torchscript_mlp_retraces_the_builtin_mlp() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let common = "[run]\nname='ts'\nseed=5\nthreads=1\nmax_steps=100\n\
                  [task]\nkind='gaussian'\ndim=8\nclasses=4\nn_train=512\nn_val=64\n[eval]\nevery=0\n";
    let phase = "[[phase]]\nname='main'\noptimizer='adam'\nlr=0.003\nweight_decay=0.0001\nbatch_size=32\n";
    let builtin = load(d, "mlp.toml", &format!("{common}[model]\nkind='mlp'\ndepth=2\nwidth=32\n{phase}"));
    let mut a = Trainer::new(&builtin.config, 5).unwrap();
    phasetop::trainer::reference::write_init(&a, &d.join("init.safetensors")).unwrap();
    modules(&py, &["mlp", s(&d.join("init.safetensors")), s(&d.join("mlp.pt")), "relu"]);
    // A relative path: resolved against the config file's directory.
    let script = load(d, "ts.toml", &format!("{common}[model]\nkind='torchscript'\npath='mlp.pt'\n{phase}"));
    let mut b = Trainer::new(&script.config, 5).unwrap();
    let names = |t: &Trainer| t.parameters().iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b), "the same parameters by name");
    assert_eq!(b.layers(), ["mlp.0", "mlp.1", "head"], "features' keys");
    let mut worst = 0.0f64;
    for step in 1..=STEPS {
        let (la, lb) = (a.train_step()["train_loss"], b.train_step()["train_loss"]);
        let rel = (la - lb).abs() / la.abs();
        worst = worst.max(rel);
        assert!(rel <= 1e-5, "step {step}: built-in {la}, TorchScript {lb} (relative {rel:.2e})");
    }
    eprintln!("worst relative difference over {STEPS} steps: {worst:.2e}");
    // The run learned something (the comparison is not between two flat lines).
    let first = Trainer::new(&builtin.config, 5).unwrap().evaluate()["val_loss"];
    assert!(a.evaluate()["val_loss"] < 0.8 * first);
}

/// Every tensor of two checkpoints is equal.
fn same_checkpoint(a: &Path, b: &Path) {
    let read = |p: &Path| {
        let mut v = Tensor::read_safetensors(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    };
    let (ta, tb) = (read(a), read(b));
    assert_eq!(ta.iter().map(|t| &t.0).collect::<Vec<_>>(), tb.iter().map(|t| &t.0).collect::<Vec<_>>());
    for ((name, x), (_, y)) in ta.iter().zip(&tb) {
        assert!(x.equal(y), "{name} differs between {} and {}", a.display(), b.display());
    }
}

fn tensor(path: &Path, key: &str) -> Tensor {
    Tensor::read_safetensors(path).unwrap().into_iter().find(|(n, _)| n == key).unwrap_or_else(|| panic!("no {key}")).1
}

/// A batch-norm module (encoder = Linear + BatchNorm1d, head) on a tensors task: phase
/// "probe" trains the head with the encoder frozen, "full" trains everything.
fn bn_run(d: &Path, py: &Path) -> PathBuf {
    let (data, bn) = (d.join("data.safetensors"), d.join("bn.pt"));
    modules(
        py,
        &["data", s(&data), "400", "100", "8", "3", "+", "bn", s(&bn), "8", "3", "+", "errors", s(d), "8", "3"],
    );
    let cfg = d.join("bn.toml");
    std::fs::write(
        &cfg,
        "[run]\nname='bn'\nseed=2\nthreads=1\nmax_steps=60\n\
         [task]\nkind='tensors'\npath='data.safetensors'\n[model]\nkind='torchscript'\npath='bn.pt'\n\
         [eval]\nevery=10\n[probes]\nevery=20\nlayers=['encoder']\nbatch=64\n[checkpoint]\nevery=10\nkeep=100\n\
         [[phase]]\nname='probe'\nsteps=30\noptimizer='adam'\nlr=0.01\nbatch_size=32\nfreeze=['encoder']\n\
         [[phase]]\nname='full'\noptimizer='sgd'\nlr=0.05\nmomentum=0.9\nbatch_size=32\n",
    )
    .unwrap();
    cfg
}

#[test]
fn resume_branch_and_rollback_continue_a_torchscript_run_exactly() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cfg = bn_run(d, &py);
    let whole = d.join("runs/whole");
    let out = bin(&["train", "--headless", "--run-dir", s(&whole), s(&cfg)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ck = |run: &Path, step: u64| checkpoint::tensors_path(&run.join("checkpoints"), step);

    // Frozen prefixes do not move; the head and batch norm's running statistics do.
    let at30 = ck(&whole, 30);
    for name in ["encoder.0.weight", "encoder.0.bias", "encoder.1.weight", "encoder.1.bias"] {
        assert!(tensor(&at30, &format!("model.{name}")).equal(&tensor(&at30, &format!("init.{name}"))), "{name} moved");
    }
    assert!(!tensor(&at30, "model.head.weight").equal(&tensor(&at30, "init.head.weight")));
    let mean = tensor(&at30, "buffer.encoder.1.running_mean");
    assert!(mean.abs().sum(tch::Kind::Float).double_value(&[]) > 0.0, "running statistics are checkpointed");
    assert_eq!(tensor(&at30, "buffer.encoder.1.num_batches_tracked").int64_value(&[]), 30);
    assert!(!tensor(&ck(&whole, 60), "model.encoder.0.weight").equal(&tensor(&at30, "model.encoder.0.weight")));

    // --resume: stopped at 40, resumed to 60, equals the uninterrupted run.
    let cut = d.join("runs/cut");
    let out = bin(&["train", "--headless", "--run-dir", s(&cut), "--max-steps", "40", s(&cfg)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = bin(&["train", "--headless", "--resume", s(&cut), "--max-steps", "60"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    same_checkpoint(&ck(&whole, 60), &ck(&cut, 60));

    // branch at 20 (inside the frozen phase), run to 60: equals the parent.
    let out = bin(&["branch", s(&whole), "--at", "20", "--headless", "--max-steps", "60"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    same_checkpoint(&ck(&whole, 60), &ck(&d.join("runs/whole-b20"), 60));

    // A rollback restores the newest good checkpoint (the same path as a divergence
    // rollback): a trainer rolled back to 50 and trained on equals the run at 60.
    let loaded = phasetop::config::load(&whole.join("config.toml")).unwrap();
    let mut t = Trainer::new(&loaded.config, 2).unwrap();
    let scratch = d.join("rollback");
    std::fs::create_dir_all(&scratch).unwrap();
    for step in [40, 50] {
        std::fs::copy(ck(&whole, step), checkpoint::tensors_path(&scratch, step)).unwrap();
        let json = |dir: &Path| dir.join(format!("step-{step:09}.json"));
        std::fs::copy(json(&whole.join("checkpoints")), json(&scratch)).unwrap();
    }
    let (restored, passed) = checkpoint::restore_last_good(&mut t, &scratch);
    assert_eq!(restored.map(|(m, _)| m.step), Some(50), "{passed:?}");
    for _ in 0..10 {
        t.train_step();
    }
    let out = d.join("out");
    checkpoint::save(&t, &out, false).unwrap();
    same_checkpoint(&ck(&whole, 60), &checkpoint::tensors_path(&out, 60));
}

/// Probe metrics of a module's `features` equal the numpy formulas (the fixtures'
/// generator) on the features PyTorch computes for the same probe batch, at 1e-5.
#[test]
fn probes_via_features_equal_the_numpy_formulas() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let _ = bn_run(d, &py);
    let loaded = phasetop::config::load(&d.join("bn.toml")).unwrap();
    let t = Trainer::new(&loaded.config, 2).unwrap();
    assert_eq!(t.layers(), ["encoder", "head"]);
    let want: serde_json::Value =
        serde_json::from_str(&modules(&py, &["probes", s(&d.join("bn.pt")), s(&d.join("data.safetensors")), "64"]))
            .unwrap();
    let feats = t.probe_features();
    assert_eq!(feats.iter().map(|f| f.layer.as_str()).collect::<Vec<_>>(), ["encoder", "head"]);
    let mut checked = 0;
    for f in &feats {
        for (k, got) in phasetop::probes::layer_metrics(f) {
            let w = want[&f.layer][&k].as_f64().unwrap();
            assert!((got - w).abs() <= 1e-9f64.max(1e-5 * w.abs()), "{}/{k}: phasetop {got}, numpy {w}", f.layer);
            checked += 1;
        }
    }
    assert_eq!(checked, 10);

    // Without `features` (plain.pt, made by `bn_run`), the output is the one probe-able layer.
    let text = std::fs::read_to_string(d.join("bn.toml"))
        .unwrap()
        .replace("bn.pt", "plain.pt")
        .replace("layers=['encoder']\n", "layers=['output']\n");
    let text = text.replace("freeze=['encoder']", "freeze=['l.bias']");
    let plain = load(d, "plain.toml", &text);
    let t = Trainer::new(&plain.config, 2).unwrap();
    assert_eq!(t.layers(), ["output"]);
    let feats = t.probe_features();
    assert_eq!((feats.len(), feats[0].layer.as_str(), feats[0].value.size()), (1, "output", vec![64, 3]));
}

/// `phasetop check` on `body` (written as `dir/NAME`): (exit code, stderr).
fn check(dir: &Path, name: &str, body: &str) -> (Option<i32>, String) {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    let out = bin(&["check", s(&p)]);
    (out.status.code(), text(&out.stderr) + &text(&out.stdout))
}

#[test]
fn errors_are_located_and_exit_2() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (data, bn) = (d.join("data.safetensors"), d.join("bn.pt"));
    modules(&py, &["data", s(&data), "40", "10", "8", "4", "+", "bn", s(&bn), "8", "4", "+", "errors", s(d), "8", "4"]);
    let cfg = |model: &str, extra: &str| {
        format!(
            "[run]\nname='e'\nmax_steps=10\n[task]\nkind='tensors'\npath='data.safetensors'\n\
             [model]\nkind='torchscript'\npath='{model}'\n{extra}\
             [[phase]]\nname='a'\noptimizer='sgd'\nlr=0.1\nbatch_size=8\n"
        )
    };
    // (model file, extra config, expected location, words of the message)
    let cases: &[(&str, &str, &str, &[&str])] = &[
        ("nope.pt", "", ":9:6:", &["nope.pt: cannot open the TorchScript module", "No such file"]),
        ("notscript.pt", "", ":9:6:", &["notscript.pt: not a TorchScript archive", "torch.jit.script(model).save"]),
        (
            "wrongout.pt",
            "",
            ":9:6:",
            &["forward returns shape [2, 5] for 2 inputs; the task has 4 classes, so it must return [2, 4]"],
        ),
        (
            "wrongin.pt",
            "",
            ":9:6:",
            &["forward fails on the task's inputs: given input shape [2, 8] (per sample [8])", "expected [n, 11]"],
        ),
        ("noparams.pt", "", ":9:6:", &["no trainable parameters", "all 2 have requires_grad = False"]),
        (
            "intlogits.pt",
            "",
            ":9:6:",
            &["intlogits.pt: forward returns Int64 logits; it must return a floating-point tensor"],
        ),
        (
            "bn.pt",
            "[probes]\nevery=5\nlayers=['encoder', 'enc']\n",
            ":12:20:",
            &["unknown layer \"enc\", expected one of encoder, head"],
        ),
    ];
    for (i, (model, extra, at, words)) in cases.iter().enumerate() {
        let (code, err) = check(d, &format!("c{i}.toml"), &cfg(model, extra));
        assert_eq!(code, Some(2), "{model}: {err}");
        assert!(err.contains(&format!("c{i}.toml{at}")), "{model}: location {at} in {err}");
        for w in *words {
            assert!(err.contains(w), "{model}: \"{w}\" in {err}");
        }
    }
    // A module that `check` passes and that fails in training ends the run as failed with
    // a message naming its file, the call and the reason: no panic, no C++ backtrace.
    let (code, out) = check(d, "big.toml", &cfg("bigbatch.pt", ""));
    assert_eq!(code, Some(0), "{out}");
    let run = d.join("runs/big");
    let out = bin(&["train", "--headless", "--run-dir", s(&run), s(&d.join("big.toml"))]);
    assert!(!out.status.success());
    let ended = phasetop::runlog::read_all(&run.join("events.log"))
        .unwrap()
        .records
        .into_iter()
        .find_map(|r| match r.event {
            phasetop::event::Event::RunEnded { status, message, .. } => Some((status, message)),
            _ => None,
        })
        .expect("a run_ended");
    assert_eq!(ended.0, phasetop::event::RunStatus::Failed);
    let m = &ended.1;
    assert!(m.contains("bigbatch.pt: forward(x) failed on a batch of shape [8, 8]"), "{m}");
    assert!(m.contains("RuntimeError: refuses batches of more than 2 rows"), "{m}");
    assert!(!m.contains('\n') && m.len() < 400, "one line, no backtrace: {m}");
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked at"), "{stderr}");
    // freeze: a prefix at a dot, and not everything.
    let phase_freeze =
        |list: &str| cfg("bn.pt", "").replace("batch_size=8\n", &format!("batch_size=8\nfreeze={list}\n"));
    let (code, err) = check(d, "f1.toml", &phase_freeze("['enc']"));
    assert_eq!(code, Some(2));
    assert!(
        err.contains("f1.toml:15:") && err.contains("\"enc\" is no parameter of the module nor a prefix of one"),
        "{err}"
    );
    let (code, err) = check(d, "f2.toml", &phase_freeze("['encoder', 'head']"));
    assert_eq!(code, Some(2));
    assert!(err.contains("every parameter is frozen"), "{err}");
    let (code, out) = check(d, "ok.toml", &phase_freeze("['encoder.1']"));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("module layers: encoder, head"), "{out}");
    // An until rule on a layer the module does not have.
    let until = cfg("bn.pt", "[probes]\nevery=5\nlayers=['encoder']\n")
        + "until = { detector = 'plateau', metric = 'block/eff_rank' }\n";
    let (code, err) = check(d, "u.toml", &until);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown layer \"block\" in \"block/eff_rank\", expected one of encoder, head"), "{err}");
}

/// A tensors task's file: each problem named, located at `[task] path`, exit 2.
#[test]
fn bad_tensor_files_are_located_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let x = Tensor::randn([6, 2, 3], (tch::Kind::Float, tch::Device::Cpu));
    let y = Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2]);
    let write = |name: &str, parts: &[(&str, &Tensor)]| Tensor::write_safetensors(parts, d.join(name)).unwrap();
    let xv = x.narrow(0, 0, 3);
    let yv = y.narrow(0, 0, 3);
    write("good.safetensors", &[("x_train", &x), ("y_train", &y), ("x_val", &xv), ("y_val", &yv)]);
    write("nokey.safetensors", &[("x_train", &x), ("y_train", &y), ("x_val", &xv)]);
    let yf = y.to_kind(tch::Kind::Float);
    write("floaty.safetensors", &[("x_train", &x), ("y_train", &yf), ("x_val", &xv), ("y_val", &yv)]);
    let xi = x.to_kind(tch::Kind::Int64);
    write("intx.safetensors", &[("x_train", &xi), ("y_train", &y), ("x_val", &xv), ("y_val", &yv)]);
    let short = y.narrow(0, 0, 4);
    write("short.safetensors", &[("x_train", &x), ("y_train", &short), ("x_val", &xv), ("y_val", &yv)]);
    let xv2 = Tensor::zeros([3, 3, 2], (tch::Kind::Float, tch::Device::Cpu));
    write("shape.safetensors", &[("x_train", &x), ("y_train", &y), ("x_val", &xv2), ("y_val", &yv)]);
    std::fs::write(d.join("junk.safetensors"), b"not a safetensors file").unwrap();
    let cfg = |file: &str, model: &str| {
        format!(
            "[run]\nname='e'\nmax_steps=10\n[task]\nkind='tensors'\npath='{file}'\n[model]\n{model}\n\
             [[phase]]\nname='a'\noptimizer='sgd'\nlr=0.1\nbatch_size=4\n"
        )
    };
    let mlp = "kind='mlp'\nwidth=8";
    let cases: &[(&str, &str)] = &[
        ("missing.safetensors", "cannot open the data file"),
        ("junk.safetensors", "not a safetensors file"),
        ("nokey.safetensors", "no tensor \"y_val\" (it holds x_train, y_train, x_val"),
        ("floaty.safetensors", "y_val is Int64 but the other split's targets are floats; use one kind for both"),
        ("intx.safetensors", "x_train is Int64; inputs must be floating point"),
        ("short.safetensors", "y_train has shape [4]; expected one label per row of x_train: [6]"),
        ("shape.safetensors", "x_train's samples have shape [2, 3], x_val's [3, 2]"),
    ];
    for (file, words) in cases {
        let (code, err) = check(d, "t.toml", &cfg(file, mlp));
        assert_eq!(code, Some(2), "{file}: {err}");
        assert!(err.contains("t.toml:6:6:") && err.contains(words), "{file}: \"{words}\" in {err}");
    }
    let (code, out) = check(d, "t.toml", &cfg("good.safetensors", mlp));
    assert_eq!(code, Some(0), "{out}");
    // A cnn reads images: [n, H, W] gains a channel; flat features are refused.
    let (code, out) = check(d, "t.toml", &cfg("good.safetensors", "kind='cnn'\nchannels=[4]"));
    assert_eq!(code, Some(0), "{out}");
    let flat = x.view([6, 6]);
    let flat_v = xv.reshape([3, 6]);
    write("flat.safetensors", &[("x_train", &flat), ("y_train", &y), ("x_val", &flat_v), ("y_val", &yv)]);
    let (code, err) = check(d, "t.toml", &cfg("flat.safetensors", "kind='cnn'\nchannels=[4]"));
    assert_eq!(code, Some(2));
    assert!(err.contains("model \"cnn\" needs images: x_train of shape [n, H, W] or [n, C, H, W]"), "{err}");
}

/// The built-in cnn on images: named layers, batch norm's running statistics are
/// buffers (checkpointed, restored), evaluation and probes run in eval mode (they leave
/// the statistics alone), and a restored run continues exactly.
#[test]
fn cnn_batch_norm_buffers_are_checkpointed_and_eval_leaves_them() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    tch::manual_seed(0);
    let opts = (tch::Kind::Float, tch::Device::Cpu);
    let (x, xv) = (Tensor::rand([96, 1, 6, 6], opts), Tensor::rand([32, 1, 6, 6], opts));
    let y = Tensor::randint(3, [96], (tch::Kind::Int64, tch::Device::Cpu));
    let yv = Tensor::randint(3, [32], (tch::Kind::Int64, tch::Device::Cpu));
    Tensor::write_safetensors(
        &[("x_train", &x), ("y_train", &y), ("x_val", &xv), ("y_val", &yv)],
        d.join("img.safetensors"),
    )
    .unwrap();
    let cfg = load(
        d,
        "cnn.toml",
        "[run]\nname='c'\nseed=1\nthreads=1\nmax_steps=40\n[task]\nkind='tensors'\npath='img.safetensors'\n\
         [model]\nkind='cnn'\nchannels=[4, 8]\nbatch_norm=true\n[probes]\nevery=5\nlayers=['conv.1']\nbatch=16\n\
         [[phase]]\nname='a'\noptimizer='adam'\nlr=0.01\nbatch_size=16\n",
    );
    let mut a = Trainer::new(&cfg.config, 1).unwrap();
    assert_eq!(a.layers(), ["conv.0", "conv.1", "head"]);
    let buffers: Vec<&str> = a.buffers().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        buffers,
        ["conv.0.bn.running_mean", "conv.0.bn.running_var", "conv.1.bn.running_mean", "conv.1.bn.running_var"]
    );
    assert!(a.parameters().iter().all(|(n, _)| !n.contains("running")));
    for _ in 0..10 {
        a.train_step();
    }
    let stats = |t: &Trainer| t.buffers().iter().map(|(_, b)| b.copy()).collect::<Vec<_>>();
    let before = stats(&a);
    assert!(before[0].abs().sum(tch::Kind::Float).double_value(&[]) > 0.0, "training moved the running mean");
    let _ = a.evaluate();
    let feats = a.probe_features();
    assert_eq!(feats[1].value.size(), [16, 8, 1, 1], "conv.1 after two 2×2 poolings of 6×6");
    for (b, b0) in stats(&a).iter().zip(&before) {
        assert!(b.equal(b0), "evaluation and probes leave the running statistics alone");
    }
    checkpoint::save(&a, d, false).unwrap();
    let saved = checkpoint::tensors_path(d, 10);
    assert!(tensor(&saved, "buffer.conv.1.bn.running_var").equal(&before[3]));
    let mut b = Trainer::new(&cfg.config, 1).unwrap();
    let meta = checkpoint::latest(d).unwrap();
    checkpoint::restore(&mut b, d, &meta).unwrap();
    for _ in 0..5 {
        assert_eq!(a.train_step()["train_loss"], b.train_step()["train_loss"]);
    }
    assert_eq!(a.evaluate()["val_loss"], b.evaluate()["val_loss"], "the restored statistics are the same");
}

/// Float targets: regression with `mse`; other losses refused at the data's path.
#[test]
fn float_targets_train_a_regression_with_mse() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    tch::manual_seed(0);
    let opts = (tch::Kind::Float, tch::Device::Cpu);
    let x = Tensor::randn([300, 4], opts);
    let w = Tensor::randn([4, 2], opts);
    let y = x.mm(&w);
    let (xt, xv, yt, yv) = (x.narrow(0, 0, 250), x.narrow(0, 250, 50), y.narrow(0, 0, 250), y.narrow(0, 250, 50));
    Tensor::write_safetensors(
        &[("x_train", &xt), ("y_train", &yt), ("x_val", &xv), ("y_val", &yv)],
        d.join("r.safetensors"),
    )
    .unwrap();
    let body = |loss: &str| {
        format!(
            "[run]\nname='r'\nseed=1\nthreads=1\nmax_steps=200\n[task]\nkind='tensors'\npath='r.safetensors'\n\
             [model]\nkind='mlp'\nwidth=16\ndepth=1\n[[phase]]\nname='a'\noptimizer='adam'\nlr=0.01\nbatch_size=25\n\
             loss=[{{ kind='{loss}' }}]\n"
        )
    };
    let cfg = load(d, "r.toml", &body("mse"));
    let mut t = Trainer::new(&cfg.config, 1).unwrap();
    assert_eq!(t.classes(), 2, "two target values per row");
    let first = t.evaluate();
    assert!(!first.contains_key("val_acc"));
    for _ in 0..200 {
        let m = t.train_step();
        assert!(!m.contains_key("train_acc"));
    }
    let last = t.evaluate()["val_loss"];
    assert!(last < 0.1 * first["val_loss"], "{} → {last}", first["val_loss"]);
    let (code, err) = check(d, "ce.toml", &body("ce"));
    assert_eq!(code, Some(2));
    assert!(err.contains("ce.toml:8:6:") && err.contains("targets are floats (regression), which need loss"), "{err}");
}
