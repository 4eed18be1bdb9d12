//! Links `berth-shim` as a position-dependent executable (`-no-pie`). In a PIE every
//! pointer in its read-only data (vtables, string tables: about 0.3 MiB) is relocated
//! at start-up, which makes each shim a private copy of those pages; at fixed addresses
//! they stay clean page-cache pages shared by every shim. Shared libraries, heap and
//! stack are still placed at random. The README's "Shim memory and speed" has figures.
fn main() {
    println!("cargo::rustc-link-arg-bins=-no-pie");
    println!("cargo::rerun-if-changed=build.rs");
}
