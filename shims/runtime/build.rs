//! Build script of berth-runtime: how `berth-runc` is linked.

fn main() {
    // berth-runc runs twice per container command (the sealed re-exec): a
    // position-dependent executable starts without ~15,000 relative relocations, each
    // page of which the dynamic loader would otherwise copy on write.
    println!("cargo:rustc-link-arg-bin=berth-runc=-no-pie");
    println!("cargo:rerun-if-changed=build.rs");
}
