//! `berthctl`: the command-line client for people. For now it has the image verbs,
//! which work directly on an image root; the other verbs arrive with the daemon's front
//! doors.
use std::path::PathBuf;

use clap::Parser;

#[path = "../cli/images.rs"]
mod images;

#[derive(Parser)]
#[command(name = "berthctl", version, about = "berth command-line client")]
struct Args {
    /// berth's data directory.
    #[arg(long, default_value = "/var/lib/berth")]
    root: PathBuf,
    /// The daemon's config file (registry mirrors, credentials, pull settings).
    #[arg(long, default_value = "/etc/berth/config.toml")]
    config: PathBuf,
    #[command(subcommand)]
    verb: images::ImageVerb,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match images::run(args.root, args.config, args.verb) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("berthctl: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
