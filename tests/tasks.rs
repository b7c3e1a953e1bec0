//! Built-in tasks produce what they claim; CSV errors name the line; models and phase
//! settings (freeze, loss terms, transformer) train for real.

use phasetop::config::{self, ModelKind};
use phasetop::tch;
use phasetop::trainer::Trainer;
use phasetop::trainer::data::{Dataset, Inputs};
use tch::{Device, Tensor};

fn cfg(task: &str, model: &str, phase_extra: &str) -> config::Config {
    let src = format!(
        "[run]\nname='t'\nmax_steps=100\nthreads=1\n[task]\n{task}\n[model]\n{model}\n[eval]\nevery=10\n\
         [[phase]]\nname='a'\noptimizer='adam'\nlr=0.01\nbatch_size=64\n{phase_extra}\n"
    );
    config::parse("t.toml", &src).unwrap_or_else(|e| panic!("{e}"))
}

fn rows_i64(t: &Tensor) -> Vec<Vec<i64>> {
    let n = t.size()[0];
    (0..n).map(|i| Vec::<i64>::try_from(t.get(i)).unwrap()).collect()
}

#[test]
fn modular_labels_are_correct_for_every_op() {
    for (op, f) in [
        ("add", (|a, b, p| (a + b) % p) as fn(i64, i64, i64) -> i64),
        ("sub", |a, b, p| (a - b).rem_euclid(p)),
        ("mul", |a, b, p| a * b % p),
        ("div", |a, b, p| (0..p).find(|c| c * b % p == a).unwrap()),
    ] {
        let c = cfg(
            &format!("kind='modular'\np=13\nop='{op}'\ntrain_fraction=0.5"),
            "kind='transformer'\nd_model=16\nheads=2",
            "",
        );
        let d = Dataset::build(&c.task, ModelKind::Transformer, 0, Device::Cpu).unwrap();
        assert_eq!(d.inputs, Inputs::Tokens { vocab: 14, seq_len: 3 });
        let pairs = if op == "div" { 13 * 12 } else { 169 };
        assert_eq!(d.n_train() + d.val_y.size()[0] as usize, pairs);
        for (x, y) in [(&d.train_x, &d.train_y), (&d.val_x, &d.val_y)] {
            let ys = Vec::<i64>::try_from(y).unwrap();
            for (row, label) in rows_i64(x).iter().zip(ys) {
                assert_eq!(row[2], 13, "the = token");
                assert_eq!(label, f(row[0], row[1], 13), "{op}: {row:?}");
            }
        }
    }
    // The MLP sees one-hot(a) ++ one-hot(b) with the same labels.
    let c = cfg("kind='modular'\np=7", "kind='mlp'", "");
    let d = Dataset::build(&c.task, ModelKind::Mlp, 0, Device::Cpu).unwrap();
    assert_eq!(d.inputs, Inputs::Features { dim: 14 });
    let x = d.train_x.argmax(-1, false); // index of a (first block wins ties by position)
    let b = d.train_x.narrow(1, 7, 7).argmax(-1, false);
    let ys = Vec::<i64>::try_from(&d.train_y).unwrap();
    let (xs, bs) = (Vec::<i64>::try_from(&x).unwrap(), Vec::<i64>::try_from(&b).unwrap());
    for i in 0..ys.len() {
        assert_eq!(ys[i], (xs[i] + bs[i]) % 7);
    }
}

#[test]
fn parity_labels_follow_the_first_k_coordinates() {
    let c = cfg("kind='parity'\ndim=10\nk=3\nn_train=300\nn_val=100", "kind='mlp'", "");
    let d = Dataset::build(&c.task, ModelKind::Mlp, 5, Device::Cpu).unwrap();
    let x = Vec::<f32>::try_from(d.train_x.flatten(0, -1)).unwrap();
    let y = Vec::<i64>::try_from(&d.train_y).unwrap();
    let mut ones = 0;
    for (i, label) in y.iter().enumerate() {
        let row = &x[i * 10..i * 10 + 10];
        assert!(row.iter().all(|v| *v == 1.0 || *v == -1.0));
        let prod: f32 = row[..3].iter().product();
        assert_eq!(*label, (prod < 0.0) as i64);
        ones += label;
    }
    assert!(ones > 100 && ones < 200, "balanced classes, got {ones}/300");
    // Seeded: the same seed gives the same data, another seed other data.
    let again = Dataset::build(&c.task, ModelKind::Mlp, 5, Device::Cpu).unwrap();
    assert!(again.train_x.equal(&d.train_x));
    let other = Dataset::build(&c.task, ModelKind::Mlp, 6, Device::Cpu).unwrap();
    assert!(!other.train_x.equal(&d.train_x));
}

#[test]
fn csv_task_loads_names_classes_and_reports_bad_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.csv");
    let mut text = String::from("a,b,species\n");
    for i in 0..40 {
        text.push_str(&format!("{},{},{}\n", i, i % 7, if i % 2 == 0 { "cat" } else { "dog" }));
    }
    std::fs::write(&good, &text).unwrap();
    let c = cfg(&format!("kind='csv'\npath='{}'\nlabel='species'", good.display()), "kind='mlp'", "");
    let d = Dataset::build(&c.task, ModelKind::Mlp, 0, Device::Cpu).unwrap();
    assert_eq!(d.classes, 2);
    assert_eq!(d.inputs, Inputs::Features { dim: 2 });
    assert_eq!(d.n_train(), 32);
    let mut t = Trainer::new(&c, 0).unwrap();
    assert!(t.train_step()["train_loss"].is_finite());

    let bad = tmp.path().join("bad.csv");
    std::fs::write(&bad, "a,b,species\n1,2,cat\n3,x7,dog\n").unwrap();
    let c = cfg(&format!("kind='csv'\npath='{}'\nlabel='species'", bad.display()), "kind='mlp'", "");
    let err = Dataset::build(&c.task, ModelKind::Mlp, 0, Device::Cpu).err().unwrap().to_string();
    assert!(err.contains(&format!("{}:3: column \"b\": cannot parse \"x7\" as a number", bad.display())), "{err}");

    let ragged = tmp.path().join("ragged.csv");
    std::fs::write(&ragged, "a,b,species\n1,2,cat\n3,4\n").unwrap();
    let c = cfg(&format!("kind='csv'\npath='{}'\nlabel='species'", ragged.display()), "kind='mlp'", "");
    let err = Dataset::build(&c.task, ModelKind::Mlp, 0, Device::Cpu).err().unwrap().to_string();
    assert!(err.contains(":3:"), "{err}");

    let c = cfg(&format!("kind='csv'\npath='{}'\nlabel='kind'", good.display()), "kind='mlp'", "");
    let err = Dataset::build(&c.task, ModelKind::Mlp, 0, Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("no column \"kind\""), "{err}");
}

#[test]
fn frozen_layers_do_not_move_and_unfreeze_trains_them() {
    let src = "[run]\nname='t'\nmax_steps=100\nthreads=1\n[task]\nkind='gaussian'\nn_train=256\nn_val=64\n\
               [model]\nkind='mlp'\ndepth=2\nwidth=16\n\
               [[phase]]\nname='frozen'\nsteps=5\noptimizer='adam'\nlr=0.05\nbatch_size=32\nfreeze=['mlp.0']\n\
               [[phase]]\nname='free'\noptimizer='adam'\nlr=0.05\nbatch_size=32\n";
    let c = config::parse("t.toml", src).unwrap();
    let mut t = Trainer::new(&c, 1).unwrap();
    let snapshot = |t: &Trainer| -> Vec<(String, Tensor)> {
        t.parameters().iter().map(|(n, p)| (n.clone(), p.detach().copy())).collect()
    };
    let before = snapshot(&t);
    for _ in 0..5 {
        t.train_step();
    }
    let mid = snapshot(&t);
    for ((name, a), (_, b)) in before.iter().zip(&mid) {
        assert_eq!(a.equal(b), name.starts_with("mlp.0."), "{name} frozen-ness");
    }
    assert!(t.phase_finished());
    t.switch_to(1);
    t.train_step();
    let after = snapshot(&t);
    for ((name, a), (_, b)) in mid.iter().zip(&after) {
        assert!(!a.equal(b), "{name} trains after unfreezing");
    }
}

#[test]
fn transformer_and_multi_term_losses_train() {
    let c = cfg(
        "kind='modular'\np=11\ntrain_fraction=0.5",
        "kind='transformer'\nd_model=32\nheads=4\nlayers=2",
        "loss=[{kind='ce'},{kind='mse',weight=0.5},{kind='l2',weight=0.001}]",
    );
    let mut t = Trainer::new(&c, 0).unwrap();
    let first = t.train_step();
    for key in ["loss/ce", "loss/mse", "loss/l2", "grad_norm", "weight_norm", "dist_init", "train_acc"] {
        assert!(first[key].is_finite(), "{key} missing or not finite: {first:?}");
    }
    let expected = first["loss/ce"] + 0.5 * first["loss/mse"] + 0.001 * first["loss/l2"];
    assert!((first["train_loss"] - expected).abs() < 1e-4 * expected.abs().max(1.0));
    let mut last = first.clone();
    for _ in 0..60 {
        last = t.train_step();
    }
    assert!(last["loss/ce"] < first["loss/ce"], "loss falls: {} → {}", first["loss/ce"], last["loss/ce"]);
    assert!(last["dist_init"] > 0.0);
    let ev = t.evaluate();
    assert!((0.0..=1.0).contains(&ev["val_acc"]) && ev["val_loss"].is_finite());
    let feats = t.probe_features();
    let names: Vec<&str> = feats.iter().map(|f| f.layer.as_str()).collect();
    assert_eq!(names, ["embed", "block.0.attn", "block.0.mlp", "block.1.attn", "block.1.mlp", "head"]);
}

#[test]
fn auto_device_runs_where_cuda_is_absent() {
    let c = cfg("kind='gaussian'", "kind='mlp'", "").clone();
    let mut c = c;
    c.run.device = config::DeviceChoice::Auto;
    let t = Trainer::new(&c, 0).unwrap();
    let expected = if tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu };
    assert_eq!(t.device(), expected);
}

/// A phase's data mixture: class-weighted batches follow the weights (a class of weight
/// 0 never appears), every drawn row has the class it was drawn for, and the batches
/// stay a function of (seed, step).
#[test]
fn class_weights_set_the_batch_mixture() {
    let c = cfg("kind='gaussian'\ndim=4\nclasses=4\nn_train=2000\nn_val=100", "kind='mlp'", "");
    let d = Dataset::build(&c.task, ModelKind::Mlp, 1, Device::Cpu).unwrap();
    assert_eq!(d.class_counts().iter().sum::<usize>(), 2000);
    let y = Vec::<i64>::try_from(&d.train_y).unwrap();
    let weights = [1.0, 0.0, 0.0, 3.0];
    let mut seen = [0usize; 4];
    for step in 1..=200 {
        let idx = d.batch_indices(9, step, 64, Some(&weights));
        assert_eq!(idx.len(), 64);
        for i in idx {
            seen[y[i as usize] as usize] += 1;
        }
    }
    assert_eq!((seen[1], seen[2]), (0, 0), "weight-0 classes drawn: {seen:?}");
    let share = seen[3] as f64 / (seen[0] + seen[3]) as f64;
    assert!((share - 0.75).abs() < 0.02, "class 3 share {share}, expected 0.75: {seen:?}");
    assert_eq!(d.batch_indices(9, 7, 64, Some(&weights)), d.batch_indices(9, 7, 64, Some(&weights)));
    // Without weights, the natural mixture: every class appears.
    let natural: std::collections::BTreeSet<i64> =
        (1..=20).flat_map(|s| d.batch_indices(9, s, 64, None)).map(|i| y[i as usize]).collect();
    assert_eq!(natural.len(), 4);
}
