//! `berthctl`: the command-line client for people. Its verbs arrive with the daemon's
//! front doors; until then it says so and exits with an error.
use clap::Parser;

#[derive(Parser)]
#[command(name = "berthctl", version, about = "berth command-line client")]
struct Args {}

fn main() -> std::process::ExitCode {
    let _args = Args::parse();
    eprintln!("berthctl: no verb is built yet (they arrive with the daemon's front doors)");
    std::process::ExitCode::FAILURE
}
