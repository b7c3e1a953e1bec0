//! Issue 12, part 3: `[model] init`, `embed`, `loss = hinge`, `[task] online`,
//! `centre_scale`, `[probes] split` — their validation (file:line:col, `check` exits 2)
//! and what each does to the trainer.

use phasetop::config;
use phasetop::tch;
use phasetop::trainer::Trainer;
use tch::{Kind, Tensor};

fn cfg(task: &str, model: &str, extra: &str, phase: &str) -> String {
    format!(
        "[run]\nname = 't'\nseed = 1\nthreads = 1\nmax_steps = 300\n[task]\n{task}\n[model]\n{model}\n{extra}\n\
         [[phase]]\nname = 'a'\noptimizer = 'adam'\nlr = 0.003\nbatch_size = 64\n{phase}\n"
    )
}

fn err(src: &str) -> String {
    match config::parse("cfg.toml", src) {
        Ok(_) => panic!("config unexpectedly valid:\n{src}"),
        Err(e) => e.to_string(),
    }
}

fn trainer(src: &str) -> Trainer {
    let c = config::parse("cfg.toml", src).unwrap_or_else(|e| panic!("{e}"));
    Trainer::new(&c, c.run.seed).unwrap()
}

fn param(t: &Trainer, name: &str) -> Tensor {
    let names: Vec<&str> = t.parameters().iter().map(|(n, _)| n.as_str()).collect();
    t.parameters().iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name} in {names:?}")).1.detach()
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}
fn std(t: &Tensor) -> f64 {
    t.to_kind(Kind::Double).std(true).double_value(&[])
}

const GAUSS: &str = "kind = 'gaussian'\ndim = 100\nn_train = 256\nn_val = 64";
const MOD: &str = "kind = 'modular'\np = 13";

#[test]
fn new_keys_are_validated_with_their_location() {
    let cases = [
        (
            cfg(GAUSS, "kind = 'mlp'\ninit = 'he'", "", ""),
            r#"cfg.toml:13:8: unknown init "he", expected one of torch, tch, kaiming, xavier, normal"#,
        ),
        (
            cfg(MOD, "kind = 'transformer'\nembed = 8", "", ""),
            "cfg.toml:11:9: embed applies to an mlp; a transformer embeds its tokens in d_model",
        ),
        (
            cfg(GAUSS, "kind = 'mlp'\nembed = 8", "", ""),
            r#"cfg.toml:13:9: embed needs a token task (modular), not "gaussian""#,
        ),
        (cfg(MOD, "kind = 'mlp'\nembed = 0", "", ""), "cfg.toml:11:9: embed must be at least 1, got 0"),
        (cfg(MOD, "kind = 'mlp'\nembed_shared = false", "", ""), "cfg.toml:11:16: embed_shared needs embed = N"),
        (
            cfg(GAUSS, "kind = 'mlp'", "", "loss = [{ kind = 'hinge' }]"),
            r#"cfg.toml:19:18: loss "hinge" needs a binary task (2 classes), "gaussian" has 4"#,
        ),
        (
            cfg(&format!("{MOD}\nonline = true"), "kind = 'mlp'", "", ""),
            "cfg.toml:9:10: online = true needs a task that generates its samples (parity, gaussian)",
        ),
        (
            cfg("kind = 'parity'\ncentre_scale = 3.0", "kind = 'mlp'", "", ""),
            r#"cfg.toml:8:16: centre_scale applies to task kind "gaussian", not "parity""#,
        ),
        (
            cfg(&format!("{GAUSS}\ncentre_scale = -1.0"), "kind = 'mlp'", "", ""),
            "cfg.toml:11:16: centre_scale must be a positive number, got -1",
        ),
        (
            cfg(GAUSS, "kind = 'mlp'", "[probes]\nsplit = 'test'", ""),
            r#"cfg.toml:14:9: unknown probe split "test", expected one of train, val"#,
        ),
        (
            cfg("kind = 'parity'\nonline = true", "kind = 'mlp'", "", "class_weights = [1.0, 1.0]"),
            "cfg.toml:17:17: class_weights cannot be combined with online parity samples",
        ),
        (cfg(GAUSS, "kind = 'mlp'\ninit_scale = 0.0", "", ""), "cfg.toml:13:14: init_scale must be positive, got 0"),
    ];
    let mut failures = Vec::new();
    for (src, expected) in &cases {
        let got = err(src);
        if !got.contains(expected) {
            failures.push(format!("expected {expected:?}\n     got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} wrong:\n{}", failures.len(), cases.len(), failures.join("\n"));
    // Valid combinations.
    for src in [
        cfg(
            MOD,
            "kind = 'mlp'\nembed = 8\nembed_shared = false\ninit = 'xavier'",
            "[probes]\nevery = 10\nlayers = ['embed']\nsplit = 'train'",
            "",
        ),
        cfg(
            "kind = 'parity'\nonline = true",
            "kind = 'mlp'",
            "",
            "loss = [{ kind = 'hinge' }, { kind = 'l2', weight = 0.01 }]",
        ),
        cfg(
            &format!("{GAUSS}\nonline = true\ncentre_scale = 0.5"),
            "kind = 'mlp'\ninit = 'tch'",
            "",
            "class_weights = [1, 0, 0, 0]",
        ),
    ] {
        config::parse("cfg.toml", &src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    }
}

#[test]
fn check_exits_2_on_a_bad_init() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, cfg(GAUSS, "kind = 'mlp'\ninit = 'he'", "", "")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phasetop")).arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml:13:8: unknown init \"he\""), "{stderr}");
}

/// `torch` is `nn.Linear`'s U(±1/√fan_in) for weights and biases; `tch` (the old
/// behaviour) draws weights √6 × wider; the others as documented. Embeddings N(0, 1),
/// LayerNorm ones and zeros.
#[test]
fn init_schemes_draw_what_they_say() {
    let mlp = |init: &str| trainer(&cfg(GAUSS, &format!("kind = 'mlp'\nwidth = 400\n{init}"), "", ""));
    let fan_in = 100f64;
    let bound = 1.0 / fan_in.sqrt();
    for t in [mlp(""), mlp("init = 'torch'")] {
        let (w, b) = (param(&t, "mlp.0.weight"), param(&t, "mlp.0.bias"));
        assert!(max_abs(&w) <= bound && max_abs(&w) > 0.99 * bound, "{}", max_abs(&w));
        assert!(max_abs(&b) <= bound && max_abs(&b) > 0.95 * bound);
        assert!((std(&w) - bound / 3f64.sqrt()).abs() < 0.02 * bound);
    }
    let tch = mlp("init = 'tch'");
    let w = param(&tch, "mlp.0.weight");
    assert!((max_abs(&w) / bound - 6f64.sqrt()).abs() < 0.01, "{}", max_abs(&w) / bound);
    let kaiming = mlp("init = 'kaiming'");
    assert!((std(&param(&kaiming, "mlp.0.weight")) / (2.0 / fan_in).sqrt() - 1.0).abs() < 0.02);
    assert_eq!(max_abs(&param(&kaiming, "mlp.0.bias")), 0.0);
    let xavier = mlp("init = 'xavier'");
    let xb = (6.0 / (fan_in + 400.0)).sqrt();
    assert!(max_abs(&param(&xavier, "mlp.0.weight")) <= xb && max_abs(&param(&xavier, "mlp.0.weight")) > 0.99 * xb);
    let normal = mlp("init = 'normal'");
    assert!((std(&param(&normal, "mlp.0.weight")) / 0.02 - 1.0).abs() < 0.02);

    let tf = trainer(&cfg(MOD, "kind = 'transformer'\nd_model = 64", "", ""));
    assert!((std(&param(&tf, "embed.tok.weight")) - 1.0).abs() < 0.1);
    assert_eq!(param(&tf, "block.0.attn.ln.weight").min().double_value(&[]), 1.0);
    assert_eq!(max_abs(&param(&tf, "block.0.attn.ln.bias")), 0.0);
    assert!(max_abs(&param(&tf, "block.0.mlp.fc.weight")) <= 1.0 / 8.0);
}

/// Under the new inits `init_scale` scales weights only; under `tch` it scales every
/// parameter, as it always did.
#[test]
fn init_scale_scales_weights_only_except_under_tch() {
    for (init, biases_scaled) in [("torch", false), ("kaiming", false), ("tch", true)] {
        let make =
            |scale: f64| trainer(&cfg(GAUSS, &format!("kind = 'mlp'\ninit = '{init}'\ninit_scale = {scale}"), "", ""));
        let (one, three) = (make(1.0), make(3.0));
        let w = (param(&three, "mlp.0.weight") - param(&one, "mlp.0.weight") * 3.0).abs().max().double_value(&[]);
        assert!(w < 1e-6, "{init}: weights scaled");
        let (b1, b3) = (param(&one, "mlp.0.bias"), param(&three, "mlp.0.bias"));
        let expected = if biases_scaled { b1 * 3.0 } else { b1 };
        assert!((b3 - expected).abs().max().double_value(&[]) < 1e-6, "{init}: biases");
    }
}

#[test]
fn mlp_embeddings_shared_or_per_position_learn_modular_addition() {
    for shared in [true, false] {
        let src = cfg(
            "kind = 'modular'\np = 13\ntrain_fraction = 0.9",
            &format!("kind = 'mlp'\ndepth = 1\nwidth = 128\nembed = 16\nembed_shared = {shared}"),
            "[probes]\nevery = 10\nlayers = ['embed', 'mlp.0']",
            "",
        );
        let mut t = trainer(&src);
        let names: Vec<String> = t.parameters().iter().map(|(n, _)| n.clone()).collect();
        if shared {
            assert_eq!(param(&t, "embed.tok.weight").size(), [13, 16]);
        } else {
            assert_eq!(param(&t, "embed.tok0.weight").size(), [13, 16]);
            assert_eq!(param(&t, "embed.tok1.weight").size(), [13, 16]);
        }
        assert_eq!(param(&t, "mlp.0.weight").size(), [128, 32], "{names:?}");
        let feats = t.probe_features();
        assert_eq!(feats[0].layer, "embed");
        assert_eq!(feats[0].value.size()[1], 32);
        let first = t.train_step()["train_loss"];
        let mut last = first;
        for _ in 0..299 {
            last = t.train_step()["train_loss"];
        }
        assert!(last < first * 0.5, "shared={shared}: {first} → {last}");
    }
}

#[test]
fn hinge_loss_trains_parity_and_is_the_binary_hinge() {
    let src = cfg("kind = 'parity'\ndim = 8\nk = 2", "kind = 'mlp'\nwidth = 64", "", "loss = [{ kind = 'hinge' }]");
    let mut t = trainer(&src);
    let first = t.train_step()["train_loss"];
    // At initialisation the logits are small, so the hinge is about 1.
    assert!((first - 1.0).abs() < 0.3, "{first}");
    let mut m = t.train_step();
    for _ in 0..300 {
        m = t.train_step();
    }
    assert!(m["train_loss"] < 0.2 && m["train_acc"] > 0.9, "{m:?}");
}

#[test]
fn online_batches_are_fresh_deterministic_and_follow_class_weights() {
    let fixed = trainer(&cfg("kind = 'parity'\nn_train = 256", "kind = 'mlp'", "", ""));
    let online = trainer(&cfg("kind = 'parity'\nn_train = 256\nonline = true", "kind = 'mlp'", "", ""));
    let again = trainer(&cfg("kind = 'parity'\nn_train = 256\nonline = true", "kind = 'mlp'", "", ""));
    let (xf, _) = fixed.training_batch(1);
    let (xo, yo) = online.training_batch(1);
    let (xa, ya) = again.training_batch(1);
    assert_eq!(xo.size(), [64, 20]);
    assert!(xo.equal(&xa) && yo == ya, "a function of (seed, step)");
    assert!(!xo.equal(&online.training_batch(2).0));
    // 64 draws with replacement from 256 fixed rows repeat; 64 fresh 20-bit samples (almost
    // surely) do not.
    let distinct = |x: &Tensor| {
        let rows: Vec<Vec<f32>> = (0..64).map(|i| Vec::<f32>::try_from(x.get(i)).unwrap()).collect();
        let mut keys: Vec<String> = rows.iter().map(|r| format!("{r:?}")).collect();
        keys.sort();
        keys.dedup();
        keys.len()
    };
    assert!(distinct(&xf) < 64 && distinct(&xo) == 64, "{} {}", distinct(&xf), distinct(&xo));
    // Labels are the parity of each fresh sample.
    for (i, &y) in yo.iter().enumerate() {
        let row = Vec::<f32>::try_from(xo.get(i as i64)).unwrap();
        assert_eq!(y, (row[0] * row[1] < 0.0) as i64);
    }
    let weighted =
        trainer(&cfg(&format!("{GAUSS}\nonline = true"), "kind = 'mlp'", "", "class_weights = [0, 0, 1, 0]"));
    assert!(weighted.training_batch(5).1.iter().all(|&y| y == 2));
}

#[test]
fn centre_scale_sets_how_far_apart_the_clusters_are() {
    let spread_of = |extra: &str| {
        let c = config::parse("cfg.toml", &cfg(&format!("{GAUSS}\n{extra}"), "kind = 'mlp'", "", "")).unwrap();
        let d = phasetop::trainer::data::Dataset::build(&c.task, *c.model.kind.get_ref(), 1, tch::Device::Cpu).unwrap();
        std(&d.train_x)
    };
    // Coordinates are centre (N(0, scale²)) + noise (N(0, 1)): std ≈ √(scale² + 1).
    let (default, explicit, small) = (spread_of(""), spread_of("centre_scale = 2.0"), spread_of("centre_scale = 0.1"));
    assert_eq!(default, explicit, "the default is the old fixed scale, 2");
    assert!((default - 5f64.sqrt()).abs() < 0.4, "{default}");
    assert!((small - 1.0).abs() < 0.1, "{small}");
}

#[test]
fn probes_read_the_split_they_are_told() {
    let make =
        |split: &str| trainer(&cfg(GAUSS, "kind = 'mlp'", &format!("[probes]\nevery = 10\nbatch = 64\n{split}"), ""));
    let (default, val, train) = (make(""), make("split = 'val'"), make("split = 'train'"));
    let first = |t: &Trainer| t.probe_features().remove(0).value;
    assert!(first(&default).equal(&first(&val)));
    assert!(!first(&train).equal(&first(&val)));
    assert_eq!(first(&train).size(), [64, 128]);
}

/// A run made before `[model] init` existed (no `init` in its config.toml nor in its
/// run.json) was trained under tch's defaults and their optimizer rounding: a resume must
/// continue it exactly as it would have gone on, not switch it to the new default.
#[test]
fn a_run_made_before_init_existed_resumes_as_it_was_trained() {
    use phasetop::event::Event;
    use std::process::Command;
    let bin = env!("CARGO_BIN_EXE_phasetop");
    let tmp = tempfile::tempdir().unwrap();
    let base = "[run]\nname = 'old'\nseed = 3\nthreads = 1\nmax_steps = 60\n[task]\nkind = 'gaussian'\nn_train = 256\nn_val = 64\n\
                [model]\nkind = 'mlp'\ndepth = 1\nwidth = 16\nINIT\n[checkpoint]\nevery = 20\n\
                [[phase]]\nname = 'a'\noptimizer = 'adamw'\nlr = 0.01\nweight_decay = 0.1\nbatch_size = 32\n";
    let path = tmp.path().join("old.toml");
    std::fs::write(&path, base.replace("INIT", "init = 'tch'")).unwrap();
    let train = |run: &std::path::Path, extra: &[&str]| {
        let out = Command::new(bin)
            .args(["train", "--headless", "--run-dir"])
            .arg(run)
            .args(extra)
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let losses = |run: &std::path::Path| -> Vec<(u64, f64)> {
        let mut by_step = std::collections::BTreeMap::new();
        for r in phasetop::runlog::read_all(&run.join("events.log")).unwrap().records {
            if let Event::Step { step, metrics, .. } = r.event {
                by_step.insert(step, metrics["train_loss"]);
            }
        }
        by_step.into_iter().collect()
    };
    let whole = tmp.path().join("whole");
    train(&whole, &[]);
    // The same run stopped at 20 and made to look like one from before `init`.
    let old = tmp.path().join("resumed");
    train(&old, &["--max-steps", "20"]);
    let cfg = std::fs::read_to_string(old.join("config.toml")).unwrap().replace("init = 'tch'", "");
    std::fs::write(old.join("config.toml"), cfg).unwrap();
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(old.join("run.json")).unwrap()).unwrap();
    assert_eq!(meta["init"], "tch", "a new run records its init");
    meta.as_object_mut().unwrap().remove("init");
    std::fs::write(old.join("run.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
    let out = Command::new(bin)
        .args(["train", "--resume"])
        .arg(&old)
        .args(["--headless", "--max-steps", "60"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(losses(&old), losses(&whole), "the old run's resume continues bit for bit");
}
