//! Links the training host against libtorch the way it needs (the light `phasetop`
//! binary gets none of this):
//! - an rpath to libtorch's library directory, so the host, tests, benches and examples
//!   run without LD_LIBRARY_PATH;
//! - torch_cuda eagerly when it exists, on the host only: nothing references it by
//!   symbol, so without `--no-as-needed` the linker drops it and CUDA silently reports
//!   unavailable (tch-rs #907, #980).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TRAINER").is_none() {
        return; // the viewer/controller alone: no libtorch anywhere
    }
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        println!("cargo:warning=LIBTORCH is not set; run scripts/setup-torch.sh");
        return;
    };
    let root = PathBuf::from(libtorch);
    let root = root.canonicalize().unwrap_or(root);
    let lib = root.join("lib");
    let rpath = format!("-Wl,-rpath,{}", lib.display());
    for kind in ["tests", "benches", "examples"] {
        println!("cargo:rustc-link-arg-{kind}={rpath}");
    }
    println!("cargo:rustc-link-arg-bin=phasetop-host={rpath}");
    // The wheel's CUDA libraries live in sibling nvidia/* packages; libtorch_cuda finds
    // them through its own rpath, so only torch's lib dir is needed here.
    if lib.join("libtorch_cuda.so").exists() {
        for arg in ["-Wl,--no-as-needed", &format!("-L{}", lib.display()), "-ltorch_cuda", "-Wl,--as-needed"] {
            println!("cargo:rustc-link-arg-bin=phasetop-host={arg}");
        }
    }
}
