//! `berth-shim`: the per-container supervisor speaking containerd's shim v2 task API
//! over ttrpc. `start` forks a detached daemon and prints its address; `delete` cleans
//! up after a daemon that died. Installed as `containerd-shim-berth-v2` it serves
//! containerd 1.6 (`containerd.task.v2`) and 2.x (`containerd.task.v3`).

mod backend;
mod crilog;
mod daemon;
mod error;
mod early_exits;
mod events;
mod flags;
mod idle;
mod idmap;
mod launch;
mod mounts;
mod paths;
mod process;
mod reaper;
mod service;
mod stats;
mod stdio;
mod task;
mod timefmt;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags = match flags::Flags::parse(&args) {
        Ok(flags) => flags,
        Err(message) => {
            eprintln!("berth-shim: {message}");
            return ExitCode::from(2);
        }
    };
    if flags.version {
        println!("berth-shim {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let result = match flags.action.as_deref() {
        Some("start") => launch::start(&flags),
        Some("delete") => launch::delete(&flags),
        Some(other) => Err(error::ShimError::Usage(format!("unknown action {other:?}"))),
        None => Err(error::ShimError::Usage("an action is required: start or delete".into())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("berth-shim: {error}");
            ExitCode::FAILURE
        }
    }
}
