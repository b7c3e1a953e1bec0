//! An rpath to libtorch for this crate's own unit tests (the root package's build.rs
//! does the same for the binaries, integration tests and benches).
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    if let Some(libtorch) = std::env::var_os("LIBTORCH") {
        let root = std::path::PathBuf::from(libtorch);
        let root = root.canonicalize().unwrap_or(root);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", root.join("lib").display());
    }
}
