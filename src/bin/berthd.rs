//! `berthd`: the berth daemon. Its front doors arrive in their own issues; until then
//! it says so and exits with an error rather than pretending to serve.
use clap::Parser;

#[derive(Parser)]
#[command(name = "berthd", version, about = "berth container runtime daemon")]
struct Args {}

fn main() -> std::process::ExitCode {
    let _args = Args::parse();
    eprintln!("berthd: no front door is built yet (CRI and Docker API arrive in later issues)");
    std::process::ExitCode::FAILURE
}
