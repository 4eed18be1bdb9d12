//! Build script for the root package. It will compile the `.proto` files in `proto/`
//! once the daemon's APIs need them; for now there is nothing to generate.
fn main() {
    println!("cargo:rerun-if-changed=proto");
}
