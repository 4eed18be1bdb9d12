//! `berth-shim`: the per-container supervisor speaking the containerd shim v2 task API.
//! Built in its own issue; this skeleton refuses to run rather than pretend.
fn main() -> std::process::ExitCode {
    eprintln!("berth-shim: not built yet (see the shim issue)");
    std::process::ExitCode::FAILURE
}
