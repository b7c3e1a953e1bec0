//! Every config error names file:line:col and what was expected; `check` exits 2.

use phasetop::config;

const BASE: &str = r#"[run]
name = "t"
seed = 1
max_steps = 100

[task]
kind = "gaussian"
dim = 8

[model]
kind = "mlp"
depth = 2
width = 16

[[phase]]
name = "warmup"
steps = 10
optimizer = "sgd"
lr = 0.1
batch_size = 32

[[phase]]
name = "main"
optimizer = "adamw"
lr = 0.001
batch_size = 32
"#;

fn err(src: &str) -> String {
    match config::parse("cfg.toml", src) {
        Ok(_) => panic!("config unexpectedly valid:\n{src}"),
        Err(e) => e.to_string(),
    }
}

fn replace(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "base lacks {from:?}");
    BASE.replacen(from, to, 1)
}

/// BASE with `[probes] every = 10` appended (no line of BASE moves).
fn probes_every_10(src: &str) -> String {
    format!("{src}\n[probes]\nevery = 10\n")
}

#[test]
fn base_config_is_valid() {
    let c = config::parse("cfg.toml", BASE).unwrap();
    assert_eq!(c.phase_names(), vec!["warmup", "main"]);
}

#[test]
fn malformed_configs_report_location_and_expectation() {
    let cases: Vec<(String, &str)> = vec![
        (
            replace(r#"optimizer = "sgd""#, r#"optimizer = "adamm""#),
            r#"cfg.toml:18:13: unknown optimizer "adamm", expected one of sgd, adam, adamw"#,
        ),
        (
            replace(r#"kind = "gaussian""#, r#"kind = "mnist""#),
            r#"cfg.toml:7:8: unknown task kind "mnist", expected one of modular, parity, gaussian, csv, tensors"#,
        ),
        (
            replace(r#"kind = "mlp""#, r#"kind = "resnet""#),
            r#"cfg.toml:11:8: unknown model kind "resnet", expected one of mlp, transformer, cnn, torchscript"#,
        ),
        (replace("width = 16", "widht = 16"), "cfg.toml:13:1: unknown field \"widht\""),
        (
            format!("{BASE}\n[eval]\nevery = \"often\"\n"),
            "cfg.toml:29:9: invalid value: string \"often\", expected a step count (0 = off) or \"auto\"",
        ),
        (
            format!("{BASE}\n[eval]\nevery = -5\n"),
            "cfg.toml:29:9: invalid value: integer \"-5\", expected a step count (0 = off) or \"auto\"",
        ),
        (replace("lr = 0.1", "lr = -0.1"), "cfg.toml:19:6: lr must be a positive number, got -0.1"),
        (replace("lr = 0.1", "lr = \"fast\""), "cfg.toml:19:6: invalid type: string \"fast\", expected f64"),
        (replace("max_steps = 100", "max_steps = 0"), "cfg.toml:4:13: max_steps must be at least 1"),
        (replace("\nsteps = 10", "\nsteps = 0"), "cfg.toml:17:9: steps must be at least 1"),
        (replace(r#"name = "main""#, r#"name = "warmup""#), r#"cfg.toml:23:8: duplicate phase name "warmup""#),
        (replace("batch_size = 32\n\n", "batch_size = 0\n\n"), "cfg.toml:20:14: batch_size must be at least 1, got 0"),
        (
            replace("lr = 0.1\n", "lr = 0.1\nschedule = \"cosin\"\n"),
            r#"cfg.toml:20:12: unknown schedule "cosin", expected one of constant, warmup, cosine, cyclical, cooldown"#,
        ),
        (
            replace("lr = 0.001\n", "lr = 0.001\nschedule = \"cosine\"\n"),
            r#"cfg.toml:26:12: schedule "cosine" needs the phase to have steps = N"#,
        ),
        (
            replace("lr = 0.001\n", "lr = 0.001\nschedule = \"cyclical\"\n"),
            "cfg.toml:26:12: schedule \"cyclical\" needs cycle_steps = N (at least 2)",
        ),
        (
            replace("lr = 0.1\n", "lr = 0.1\nfreeze = [\"mlp.7\"]\n"),
            r#"cfg.toml:20:11: unknown layer "mlp.7", expected one of mlp.0, mlp.1, head"#,
        ),
        (
            replace("lr = 0.1\n", "lr = 0.1\nbetas = [0.9, 0.99]\n"),
            "cfg.toml:20:9: betas apply to adam and adamw, not sgd",
        ),
        (
            replace("lr = 0.001\n", "lr = 0.001\nmomentum = 0.9\n"),
            "cfg.toml:26:12: momentum applies to sgd; adam and adamw use betas",
        ),
        (
            replace("lr = 0.1\n", "lr = 0.1\nloss = [{ kind = \"huber\" }]\n"),
            r#"cfg.toml:20:18: unknown loss "huber", expected one of ce, mse, l2, hinge"#,
        ),
        (
            replace("lr = 0.1\n", "lr = 0.1\nloss = [{ kind = \"l2\" }]\n"),
            "cfg.toml:20:18: a phase needs a data loss term (ce, mse or hinge), not only l2",
        ),
        (
            replace("lr = 0.1\n", "lr = 0.1\nclass_weights = [1.0, 2.0]\n"),
            "cfg.toml:20:17: class_weights has 2 entries, the task has 4 classes",
        ),
        (
            replace("lr = 0.1\n", "lr = 0.1\nclass_weights = [1.0, -1.0, 0.0, 0.0]\n"),
            "cfg.toml:20:17: class_weights must be finite, ≥ 0, and not all 0",
        ),
        (
            replace("lr = 0.1\n", "lr = 0.1\nlabel_noise = 1.5\n"),
            "cfg.toml:20:15: label_noise must be in [0, 1], got 1.5",
        ),
        (
            replace("lr = 0.1\n", "lr = 0.1\nuntil = { detector = \"jumpy\", metric = \"val_acc\" }\n"),
            r#"cfg.toml:20:22: unknown detector "jumpy", expected one of plateau, changepoint, jump, divergence, spike, collapse"#,
        ),
        (
            replace(
                "lr = 0.1\n",
                "lr = 0.1\nuntil = { detector = \"divergence\", metric = \"train_loss\", params = { min_initial_fraction = -0.1 } }\n",
            ),
            r#"cfg.toml:20:9: invalid parameters for detector "divergence": min_initial_fraction must be ≥ 0"#,
        ),
        (
            replace(
                "lr = 0.1\n",
                "lr = 0.1\nuntil = { detector = \"changepoint\", metric = \"train_loss\", params = { quiet_steps = -5 } }\n",
            ),
            r#"cfg.toml:20:9: invalid parameters for detector "changepoint": invalid value: integer `-5`, expected u64"#,
        ),
        (
            replace(
                "lr = 0.1\n",
                "lr = 0.1\nuntil = { detector = \"plateau\", metric = \"train_loss\", params = { quiet_step = 5 } }\n",
            ),
            r#"cfg.toml:20:9: invalid parameters for detector "plateau": unknown field `quiet_step`"#,
        ),
        (
            replace("lr = 0.1\n", "lr = 0.1\nuntil = { detector = \"jump\", metric = \"val_accuracy\" }\n"),
            r#"cfg.toml:20:39: unknown metric "val_accuracy""#,
        ),
        (
            replace(
                "lr = 0.1\n",
                "lr = 0.1\nuntil = { detector = \"jump\", metric = \"val_acc\", mode = \"maybe\" }\n",
            ),
            r#"cfg.toml:20:57: unknown rule mode "maybe", expected one of auto, suggest"#,
        ),
        (
            format!(
                "{}\n[eval]\nevery = 0\n",
                replace(
                    "lr = 0.1\n",
                    "lr = 0.1\nloss = [{ kind = \"ce\" }, { kind = \"mse\" }]\n\
                     until = { detector = \"jump\", metric = \"grad_cos/mse~ce\" }\n",
                )
            ),
            r#"cfg.toml:21:39: "grad_cos/mse~ce" is computed on the probe schedule, or the evaluation schedule when probes are off, and both are off"#,
        ),
        (
            probes_every_10(&replace(
                "lr = 0.1\n",
                "lr = 0.1\nuntil = { detector = \"jump\", metric = \"grad_cos/ce~mse\" }\n",
            )),
            r#"cfg.toml:20:39: "grad_cos/ce~mse" needs both terms among phase "warmup"'s loss terms (it has ce)"#,
        ),
        (
            probes_every_10(&replace(
                "lr = 0.1\n",
                "lr = 0.1\nloss = [{ kind = \"ce\" }, { kind = \"mse\" }]\n\
                 until = { detector = \"jump\", metric = \"grad_cos/ce~ce\" }\n",
            )),
            r#"cfg.toml:21:39: "grad_cos/ce~ce" needs both terms among phase "warmup"'s loss terms (it has ce, mse)"#,
        ),
        (
            probes_every_10(&replace(
                "lr = 0.1\n",
                "lr = 0.1\nuntil = { detector = \"jump\", metric = \"grad_cos/ce~huber\" }\n",
            )),
            r#"cfg.toml:20:39: unknown loss "huber" in "grad_cos/ce~huber", expected one of ce, mse, l2, hinge"#,
        ),
        (
            probes_every_10(&replace(
                "lr = 0.1\n",
                "lr = 0.1\nuntil = { detector = \"jump\", metric = \"grad_cos/ce\" }\n",
            )),
            r#"cfg.toml:20:39: "grad_cos/ce" names no pair: expected grad_cos/LOSS~LOSS"#,
        ),
        (
            replace(r#"kind = "mlp""#, r#"kind = "transformer""#),
            r#"cfg.toml:11:8: model "transformer" needs a token task (modular), not "gaussian""#,
        ),
        (replace("dim = 8", "dim = 8\np = 7"), r#"cfg.toml:7:8: field "p" does not apply to task kind "gaussian""#),
        (replace("dim = 8", "dim = 0"), "cfg.toml:8:7: dim must be at least 1, got 0"),
        (
            replace("seed = 1", "seed = 1\ndevice = \"tpu\""),
            r#"cfg.toml:4:10: unknown device "tpu", expected one of cpu, auto, cuda, cuda:N"#,
        ),
        (replace("[task]", "[tsk]"), "unknown field \"tsk\""),
        (replace("name = \"t\"\n", ""), "missing field \"name\""),
        (BASE.split("[[phase]]").next().unwrap().to_string(), "missing field \"phase\""),
        (replace("max_steps = 100", "max_steps = 100 100"), "cfg.toml:4:13: string values must be quoted"),
    ];
    let mut failures = Vec::new();
    for (src, expected) in &cases {
        let got = err(src);
        if !got.contains(expected) {
            failures.push(format!("expected {expected:?}\n     got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// A gradient-cosine rule may name its pair in either order (it is recorded sorted).
#[test]
fn grad_cos_rule_accepts_either_order() {
    for pair in ["ce~mse", "mse~ce"] {
        let src = probes_every_10(&replace(
            "lr = 0.1\n",
            &format!(
                "lr = 0.1\nloss = [{{ kind = \"mse\" }}, {{ kind = \"ce\" }}]\nuntil = {{ detector = \"jump\", metric = \"grad_cos/{pair}\" }}\n"
            ),
        ));
        config::parse("cfg.toml", &src).unwrap_or_else(|e| panic!("{pair}: {e}"));
    }
    let twice = probes_every_10(&replace(
        "lr = 0.1\n",
        "lr = 0.1\nloss = [{ kind = \"ce\" }, { kind = \"ce\", weight = 0.5 }]\n\
         until = { detector = \"jump\", metric = \"grad_cos/ce~ce\" }\n",
    ));
    config::parse("cfg.toml", &twice).unwrap_or_else(|e| panic!("ce~ce: {e}"));
}

#[test]
fn modular_div_needs_prime_and_transformer_heads_divide() {
    let m = |extra: &str, model: &str| {
        format!(
            "[run]\nname='m'\nmax_steps=5\n[task]\nkind='modular'\n{extra}\n[model]\n{model}\n\
             [[phase]]\nname='a'\noptimizer='adamw'\nlr=0.001\nbatch_size=8\n"
        )
    };
    assert!(
        err(&m("p = 12\nop = 'div'", "kind='mlp'"))
            .contains("cfg.toml:6:5: op \"div\" needs a prime modulus, 12 is not prime")
    );
    assert!(
        err(&m("p = 13", "kind='transformer'\nd_model=30\nheads=4"))
            .contains("cfg.toml:10:7: heads (4) must divide d_model (30)")
    );
    assert!(config::parse("cfg.toml", &m("p = 13\nop = 'div'", "kind='transformer'\nd_model=32\nheads=4")).is_ok());
}

#[test]
fn check_command_exits_2_with_location() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, replace(r#"optimizer = "sgd""#, r#"optimizer = "adamm""#)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phasetop")).arg("check").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{}:18:13: unknown optimizer \"adamm\"", bad.display())), "{stderr}");

    let missing = dir.path().join("nope.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phasetop")).arg("check").arg(&missing).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn shipped_configs_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if name.starts_with("external") && name.ends_with(".toml") {
            // An external run's plan (`phasetop run CONFIG -- CMD`, docs/CLIENT.md).
            config::external::load(&p).unwrap_or_else(|e| panic!("{e}"));
        } else if p.extension().is_some_and(|e| e == "toml") {
            config::load(&p).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 7, "expected the demo and six scenario configs, found {n}");
}

fn phasetop(exe: &std::path::Path, args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(exe).args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// `check` on an external run's config (no [task] or [model] table) applies the external
/// rules and says so, on the ok line and with each error (file:line:col, exit 2); a
/// single failing config's error is printed once. Checked through the training host
/// (when built) and through the light binary alone (validation only).
#[test]
fn check_knows_external_configs_and_says_which_rules_applied() {
    let dir = tempfile::tempdir().unwrap();
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/external-demo.toml");
    let bad = dir.path().join("bad-ext.toml");
    std::fs::write(&bad, "[run]\nname = 'x'\n[[phase]]\nname = 'a'\nsteps = 0\nlr = 0.1\n").unwrap();
    let builtin_bad = dir.path().join("bad.toml");
    std::fs::write(&builtin_bad, replace(r#"optimizer = "sgd""#, r#"optimizer = "adamm""#)).unwrap();
    // The light binary alone: a hard link in a directory without phasetop-host (and no
    // PATH to find one on), so `check` validates without the trainer.
    let light = dir.path().join("phasetop");
    std::fs::hard_link(env!("CARGO_BIN_EXE_phasetop"), &light)
        .or_else(|_| std::fs::copy(env!("CARGO_BIN_EXE_phasetop"), &light).map(|_| ()))
        .unwrap();
    let full = std::path::PathBuf::from(env!("CARGO_BIN_EXE_phasetop"));
    for exe in [full.as_path(), light.as_path()] {
        let check = |paths: &[&std::path::Path]| {
            let mut args = vec![std::ffi::OsStr::new("check")];
            args.extend(paths.iter().map(|p| p.as_os_str()));
            let out = std::process::Command::new(exe)
                .args(&args)
                .env_remove("PHASETOP_HOST")
                .env("PATH", if exe == light { dir.path().as_os_str() } else { std::ffi::OsStr::new("/usr/bin:/bin") })
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (code, out, err) = check(&[&demo]);
        assert_eq!(code, Some(0), "{exe:?}: {err}");
        assert!(
            out.starts_with(&format!("{}: ok (2 phases: warm → main) — an external-run config", demo.display())),
            "{out}"
        );
        assert!(out.contains("no [task] or [model] table, so the external rules applied"), "{out}");

        let (code, _, err) = check(&[&bad]);
        assert_eq!(code, Some(2), "{exe:?}: {err}");
        let want = format!("{}:5:9: steps must be at least 1", bad.display());
        assert_eq!(err.matches(&want).count(), 1, "the error, once: {err}");
        assert!(err.starts_with(&want), "the location starts the line: {err}");
        assert!(err.contains("(checked as an external-run config"), "{err}");
        // The built-in kind's error, once too.
        let (code, _, err) = check(&[&builtin_bad]);
        assert_eq!(code, Some(2));
        assert_eq!(err.matches("unknown optimizer \"adamm\"").count(), 1, "{err}");
        assert!(err.starts_with(&format!("{}:18:13: ", builtin_bad.display())), "{err}");
        assert!(!err.contains("external"), "{err}");
        // Several: each error once, the ok lines, and a count.
        let (code, out, err) = check(&[&bad, &demo, &builtin_bad]);
        assert_eq!(code, Some(2));
        assert_eq!(out.lines().count(), 1, "{out}");
        assert_eq!(err.matches(&want).count(), 1, "{err}");
        assert_eq!(err.matches("unknown optimizer").count(), 1, "{err}");
        assert!(err.contains("2 of 3 configs failed"), "{err}");
    }
    // Light: the built-in kind is validated only, and says so.
    let cfg = dir.path().join("ok.toml");
    std::fs::write(&cfg, BASE).unwrap();
    let (code, out, _) = phasetop(&light, &["check".as_ref(), cfg.as_os_str()]);
    assert_eq!(code, Some(0));
    assert!(out.contains("ok (2 phases: warmup → main) (preflight skipped"), "{out}");
    // `train` given an external config is told what it is (by the training host).
    if !cfg!(feature = "trainer") {
        return;
    }
    let (code, _, err) = phasetop(&full, &["train".as_ref(), demo.as_os_str(), "--headless".as_ref()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("run it with `phasetop run CONFIG -- CMD`"), "{err}");
}
