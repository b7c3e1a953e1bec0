//! Probe formulas against reference values computed independently with numpy
//! (scripts/gen_probe_fixtures.py → tests/fixtures/probes/*.json), at 1e-5 relative
//! (1e-9 absolute near zero).

use phasetop::probes::{self, ProbeMetrics};
use phasetop::tch;
use serde_json::Value;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

const REL: f64 = 1e-5;
const ABS: f64 = 1e-9;

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= ABS.max(REL * want.abs())
}

struct Fixture {
    name: String,
    kind: String,
    dtype: String,
    shape: Vec<i64>,
    data: Vec<f64>,
    expected: Vec<(String, f64)>,
}

fn fixtures() -> Vec<Fixture> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/probes");
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for p in paths {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let f64s = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<f64>>();
        out.push(Fixture {
            name: v["name"].as_str().unwrap().to_string(),
            kind: v["kind"].as_str().unwrap().to_string(),
            dtype: v["dtype"].as_str().unwrap_or("f64").to_string(),
            shape: v["shape"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect(),
            data: f64s(&v["data"]),
            expected: v["expected"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, x)| (k.clone(), x.as_f64().unwrap()))
                .collect(),
        });
    }
    assert!(out.len() >= 10, "expected the generated fixtures in {}", dir.display());
    out
}

fn tensor(f: &Fixture, device: Device) -> Tensor {
    let t = Tensor::from_slice(&f.data).reshape(&f.shape);
    let t = if f.dtype == "f32" { t.to_kind(Kind::Float) } else { t };
    t.to_device(device)
}

/// Checks every fixture; returns (values checked, worst error relative to the tolerance).
fn check_all(device: Device) -> (usize, f64) {
    let mut checked = 0;
    let mut worst = 0.0f64;
    let mut failures = Vec::new();
    for f in fixtures() {
        let t = tensor(&f, device);
        let got: Vec<(String, f64)> = if f.kind == "attention" {
            vec![("attention_entropy".to_string(), probes::attention_entropy(&t))]
        } else {
            ProbeMetrics::compute(&t).to_map().into_iter().collect()
        };
        for (key, want) in &f.expected {
            let g = got.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("{}: no {key}", f.name)).1;
            checked += 1;
            worst = worst.max((g - want).abs() / ABS.max(REL * want.abs()));
            if !close(g, *want) {
                failures.push(format!("{} {key}: got {g:.12e}, want {want:.12e}", f.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    (checked, worst)
}

#[test]
fn formulas_match_numpy_fixtures_on_cpu() {
    let (n, worst) = check_all(Device::Cpu);
    println!("{n} values checked; worst error {worst:.2e} of the tolerance");
}

/// The same on a GPU when there is one (the CI machines have none; skipped there).
#[test]
fn formulas_match_numpy_fixtures_on_cuda_when_available() {
    if !tch::Cuda::is_available() {
        println!("no CUDA device: skipped");
        return;
    }
    let (n, worst) = check_all(Device::Cuda(0));
    println!("{n} values checked on CUDA; worst error {worst:.2e} of the tolerance");
}

#[test]
fn single_metric_functions_agree_with_compute() {
    for f in fixtures().into_iter().filter(|f| f.kind == "features") {
        let t = tensor(&f, Device::Cpu);
        let m = ProbeMetrics::compute(&t);
        assert_eq!(m.mean_cos.to_bits(), probes::mean_cosine(&t).to_bits(), "{}", f.name);
        assert_eq!(m.eff_rank.to_bits(), probes::effective_rank(&t).to_bits(), "{}", f.name);
        assert_eq!(m.entropy.to_bits(), probes::matrix_entropy(&t).to_bits(), "{}", f.name);
        assert_eq!(m.participation.to_bits(), probes::participation_ratio(&t).to_bits(), "{}", f.name);
        assert_eq!(m.diversity, 1.0 - m.mean_cos);
    }
}

#[test]
fn map_has_the_config_metric_names() {
    let t = Tensor::randn([6, 4], (Kind::Double, Device::Cpu));
    let keys: Vec<String> = ProbeMetrics::compute(&t).to_map().into_keys().collect();
    let mut want: Vec<String> = probes::PROBE_METRICS.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(keys, want);
}

#[test]
fn higher_rank_features_are_flattened_per_sample() {
    let t = Tensor::randn([5, 3, 4], (Kind::Double, Device::Cpu));
    let a = ProbeMetrics::compute(&t);
    let b = ProbeMetrics::compute(&t.reshape([5, 12]));
    assert_eq!(a, b);
}

#[test]
fn fewer_than_two_samples_have_no_pairs() {
    let t = Tensor::from_slice(&[1.0f64, 2.0, 3.0]).reshape([1, 3]);
    let m = ProbeMetrics::compute(&t);
    assert!(m.mean_cos.is_nan() && m.diversity.is_nan());
    assert!(close(m.eff_rank, 1.0));
    assert!(close(m.entropy, 0.0));
    assert_eq!(m.participation, 0.0);
}

#[test]
fn known_closed_forms() {
    // n orthonormal rows: cosines 0, effective rank n, entropy ln n; centred covariance
    // of I_n has n − 1 equal nonzero eigenvalues, so participation n − 1.
    let n = 5;
    let eye = Tensor::eye(n, (Kind::Double, Device::Cpu));
    let m = ProbeMetrics::compute(&eye);
    assert!(close(m.mean_cos, 0.0) && close(m.diversity, 1.0));
    assert!(close(m.eff_rank, n as f64));
    assert!(close(m.entropy, (n as f64).ln()));
    assert!(close(m.participation, (n - 1) as f64));
    // Uniform attention over k keys has entropy ln k.
    let p = Tensor::full([2, 3, 7, 7], 1.0 / 7.0, (Kind::Double, Device::Cpu));
    assert!(close(probes::attention_entropy(&p), 7f64.ln()));
}
