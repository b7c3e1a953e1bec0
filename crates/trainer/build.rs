//! An rpath to libtorch for this crate's own unit tests (the root package's build.rs
//! does the same for the binaries, integration tests and benches); and
//! `src/trainer/script_shim.cpp` compiled against libtorch's headers: the one thing of a
//! TorchScript module tch does not expose, its buffers (`trainer::script`).
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/trainer/script_shim.cpp");
    let Some(libtorch) = std::env::var_os("LIBTORCH") else { return };
    let root = std::path::PathBuf::from(libtorch);
    let root = root.canonicalize().unwrap_or(root);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", root.join("lib").display());
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("src/trainer/script_shim.cpp")
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .flag("-w")
        .compile("phasetop_script_shim");
}
