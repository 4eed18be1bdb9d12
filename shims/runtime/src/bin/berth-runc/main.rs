//! `berth-runc`: runc's command line over berth-runtime. Exit codes as runc's: 0 on
//! success, 1 on error, and the container's own status for `run` and `exec`.

mod cli;
mod commands;
mod log;
mod resources;
mod terminal;

use std::process::ExitCode;

use berth_runtime::RuntimeError;
use clap::Parser;
use commands::CliError;

fn main() -> ExitCode {
    berth_runtime::handoff::run_if_handed_over();
    // Before parsing anything: a process joining a running container comes from a
    // sealed binary, so `exec` re-executes at once. Any argument spelling it is enough
    // (a needless re-exec is harmless; a missing one is not). A new container's init
    // re-executes the sealed binary itself (berth_runtime::handoff).
    let joins_container = std::env::args().skip(1).any(|a| a == "exec");
    let sealed = if joins_container { berth_runtime::sealed_exe::ensure_sealed_executable() } else { Ok(()) };
    let args = cli::normalize_args(std::env::args());
    let cli = cli::Cli::parse_from(args);
    if let Err(error) = sealed {
        return failure(&cli, &error.to_string());
    }
    match commands::dispatch(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(CliError::Runtime(RuntimeError::SealRequired(_))) => {
            // An init that cannot be handed over: run again, sealed (nothing was made).
            let error = berth_runtime::sealed_exe::ensure_sealed_executable().err();
            failure(&cli, &error.map_or_else(|| "re-executing sealed".to_string(), |e| e.to_string()))
        }
        Err(error) => failure(&cli, &error.to_string()),
    }
}

fn failure(cli: &cli::Cli, message: &str) -> ExitCode {
    log::report_error(message, cli.log.as_deref(), cli.log_format);
    ExitCode::FAILURE
}
