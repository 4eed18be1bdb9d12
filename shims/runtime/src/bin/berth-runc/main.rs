//! `berth-runc`: runc's command line over berth-runtime. Exit codes as runc's: 0 on
//! success, 1 on error, and the container's own status for `run` and `exec`.

mod cli;
mod commands;
mod log;
mod resources;
mod terminal;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Before parsing anything: the unsealed process only re-executes itself. Any
    // argument spelling a subcommand that enters a container is enough to seal (a
    // needless re-exec is harmless; a missing one is not).
    let enters_container = std::env::args().skip(1).any(|a| matches!(a.as_str(), "create" | "run" | "exec"));
    let sealed = if enters_container { berth_runtime::sealed_exe::ensure_sealed_executable() } else { Ok(()) };
    let args = cli::normalize_args(std::env::args());
    let cli = cli::Cli::parse_from(args);
    if let Err(error) = sealed {
        log::report_error(&error.to_string(), cli.log.as_deref(), cli.log_format);
        return ExitCode::FAILURE;
    }
    match commands::dispatch(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            log::report_error(&error.to_string(), cli.log.as_deref(), cli.log_format);
            ExitCode::FAILURE
        }
    }
}
