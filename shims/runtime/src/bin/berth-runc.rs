//! `berth-runc`: runc's command line over berth-runtime.
fn main() -> std::process::ExitCode {
    eprintln!("berth-runc: under construction");
    std::process::ExitCode::FAILURE
}
