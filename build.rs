//! Embeds the libtorch library directory as an rpath so the binaries, tests and
//! benches run without LD_LIBRARY_PATH, and links torch_cuda eagerly when it exists:
//! nothing references it by symbol, so without `--no-as-needed` the linker drops it
//! and CUDA silently reports unavailable (tch-rs #907, #980).
//! Also compiles `src/trainer/script_shim.cpp` against libtorch's headers: the one
//! thing of a TorchScript module tch does not expose, its buffers (`trainer::script`).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        println!("cargo:warning=LIBTORCH is not set; run scripts/setup-torch.sh");
        return;
    };
    let root = PathBuf::from(libtorch);
    let root = root.canonicalize().unwrap_or(root);
    let lib = root.join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rerun-if-changed=src/trainer/script_shim.cpp");
    cc::Build::new()
        .cpp(true)
        .file("src/trainer/script_shim.cpp")
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={}", std::env::var("LIBTORCH_CXX11_ABI").unwrap_or("1".into())))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .flag("-w")
        .compile("phasetop_script_shim");
    // The wheel's CUDA libraries live in sibling nvidia/* packages; libtorch_cuda finds
    // them through its own rpath, so only torch's lib dir is needed here.
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{}", lib.display());
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
